//! Data readers and the loader: real Fashion-MNIST (skipped with a reason when absent), corrupt
//! files written to a temp folder, synthetic CIFAR-10 batches, and loader determinism/coverage.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

mod common;
use common::{idx_bytes, TempDir};

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use limpq_trainer::data::*;
use limpq_trainer::reference::rng::SeededRng;

const FMNIST: &str = "/usr/share/datasets/fashion-mnist";

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A synthetic IDX split: n images of h×w where pixel = (i + y·w + x) mod 256, label i mod 10.
fn write_idx_split(dir: &Path, prefix: &str, n: usize, h: usize, w: usize, gzip: bool) {
    let mut px = Vec::new();
    for i in 0..n {
        for p in 0..h * w {
            px.push(((i + p) % 256) as u8);
        }
    }
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let img = idx_bytes(&[n as u32, h as u32, w as u32], &px);
    let lab = idx_bytes(&[n as u32], &labels);
    let (img, lab, ext) = if gzip {
        (gz(&img), gz(&lab), ".gz")
    } else {
        (img, lab, "")
    };
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), img).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), lab).unwrap();
}

fn err_text(r: Result<Dataset, DataError>) -> String {
    match r {
        Ok(d) => panic!("expected an error, loaded {} examples", d.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn real_fashion_mnist() {
    if !Path::new(FMNIST)
        .join("train-labels-idx1-ubyte.gz")
        .is_file()
    {
        println!("SKIPPED: Fashion-MNIST not installed at {FMNIST} (Debian package dataset-fashion-mnist)");
        return;
    }
    let train = Dataset::load("fashion-mnist", Some(Path::new(FMNIST)), Split::Train).unwrap();
    let test = Dataset::load("fashion-mnist", Some(Path::new(FMNIST)), Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (60000, 10000));
    assert_eq!(train.shape, (1, 28, 28));
    assert_eq!(train.images.len(), 60000 * 784);
    assert!(train.labels.iter().chain(&test.labels).all(|l| *l < 10));
    // Fashion-MNIST is balanced: 6000 per class in train, 1000 in test.
    assert_eq!(train.class_counts(), vec![6000; 10]);
    assert_eq!(test.class_counts(), vec![1000; 10]);
    // The normalisation constants match the data: mean 0.2860, std 0.3530 over the train pixels.
    let n = train.images.len() as f64;
    let mean = train.images.iter().map(|p| *p as f64 / 255.0).sum::<f64>() / n;
    let var = train
        .images
        .iter()
        .map(|p| (*p as f64 / 255.0 - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(
        (mean - 0.2860).abs() < 5e-4 && (var.sqrt() - 0.3530).abs() < 5e-4,
        "mean {mean} std {}",
        var.sqrt()
    );
}

/// MNIST and Fashion-MNIST share file names, sizes and format: the files of one read as
/// the other (a data folder pointing at the wrong set, `LIMPQ_DATA` at MNIST's files for a
/// Fashion-MNIST run) are refused by their first labels, in full splits only.
#[test]
fn the_other_idx_set_is_refused() {
    if Path::new(FMNIST)
        .join("t10k-labels-idx1-ubyte.gz")
        .is_file()
    {
        let e = err_text(Dataset::load("mnist", Some(Path::new(FMNIST)), Split::Test));
        assert!(
            e.contains("these are fashion-mnist's files")
                && e.contains("read as mnist; give --data fashion-mnist"),
            "{e}"
        );
    }
    // MNIST's first labels, in splits of the full size: refused as Fashion-MNIST, read as
    // MNIST; the same labels in a split of another size are anyone's.
    let t = TempDir::new("idx-signature");
    let write = |n: usize, first: &[u8]| {
        let mut labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        labels[..10].copy_from_slice(first);
        std::fs::write(
            t.0.join("t10k-labels-idx1-ubyte"),
            idx_bytes(&[n as u32], &labels),
        )
        .unwrap();
        std::fs::write(
            t.0.join("t10k-images-idx3-ubyte"),
            idx_bytes(&[n as u32, 28, 28], &vec![0; n * 784]),
        )
        .unwrap();
    };
    let digits = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9];
    write(10_000, &digits);
    let e = err_text(Dataset::load("fashion-mnist", Some(&t.0), Split::Test));
    assert!(e.contains("these are mnist's files"), "{e}");
    assert_eq!(
        Dataset::load("mnist", Some(&t.0), Split::Test)
            .unwrap()
            .len(),
        10_000
    );
    write(9_999, &digits);
    assert!(Dataset::load("fashion-mnist", Some(&t.0), Split::Test).is_ok());
}

#[test]
fn idx_plain_and_gz_read_the_same() {
    let t = TempDir::new("idx");
    let (a, b) = (t.0.join("plain"), t.0.join("gz"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    write_idx_split(&a, "t10k", 13, 28, 28, false);
    write_idx_split(&b, "t10k", 13, 28, 28, true);
    let da = Dataset::load("mnist", Some(&a), Split::Test).unwrap();
    let db = Dataset::load("mnist", Some(&b), Split::Test).unwrap();
    assert_eq!(da, db);
    assert_eq!(da.len(), 13);
    assert_eq!(da.image(2)[5], 7);
    assert_eq!(da.labels[12], 2);
    let arr = read_idx(&a.join("t10k-labels-idx1-ubyte")).unwrap();
    assert_eq!(arr.dims, vec![13]);
}

#[test]
fn corrupt_idx_files_are_errors_naming_the_file() {
    let t = TempDir::new("corrupt");
    let dir = &t.0;
    write_idx_split(dir, "train", 20, 28, 28, true);
    let img = dir.join("train-images-idx3-ubyte.gz");
    let lab = dir.join("train-labels-idx1-ubyte.gz");
    let good = std::fs::read(&img).unwrap();
    let load = || Dataset::load("fashion-mnist", Some(dir), Split::Train);
    assert!(load().is_ok());

    // Truncated gzip stream.
    std::fs::write(&img, &good[..good.len() / 2]).unwrap();
    let e = err_text(load());
    assert!(e.contains("train-images-idx3-ubyte.gz"), "{e}");
    // Corrupt gzip body (flip bytes in the middle of the deflate stream).
    let mut bad = good.clone();
    for b in &mut bad[20..60] {
        *b ^= 0x5a;
    }
    std::fs::write(&img, &bad).unwrap();
    let e = err_text(load());
    assert!(e.contains("train-images-idx3-ubyte.gz"), "{e}");
    // Valid gzip of a truncated IDX payload: data shorter than the dimensions say.
    let raw = idx_bytes(&[20, 28, 28], &vec![0u8; 20 * 784 - 1]);
    std::fs::write(&img, gz(&raw)).unwrap();
    let e = err_text(load());
    assert!(
        e.contains("train-images-idx3-ubyte.gz") && e.contains("15679"),
        "{e}"
    );
    // Bad magic.
    let mut raw = idx_bytes(&[20, 28, 28], &vec![0u8; 20 * 784]);
    raw[0] = 7;
    std::fs::write(&img, gz(&raw)).unwrap();
    let e = err_text(load());
    assert!(
        e.contains("train-images-idx3-ubyte.gz") && e.contains("magic"),
        "{e}"
    );
    // Wrong image size for the dataset.
    std::fs::write(&img, gz(&idx_bytes(&[20, 32, 32], &vec![0u8; 20 * 1024]))).unwrap();
    let e = err_text(load());
    assert!(
        e.contains("train-images-idx3-ubyte.gz") && e.contains("28"),
        "{e}"
    );
    // Label count disagrees with the image count.
    std::fs::write(&img, &good).unwrap();
    std::fs::write(&lab, gz(&idx_bytes(&[19], &[0u8; 19]))).unwrap();
    let e = err_text(load());
    assert!(
        e.contains("train-labels-idx1-ubyte.gz") && e.contains("19 labels for 20 images"),
        "{e}"
    );
    // A label that is not a class.
    let mut l = vec![0u8; 20];
    l[7] = 10;
    std::fs::write(&lab, gz(&idx_bytes(&[20], &l))).unwrap();
    let e = err_text(load());
    assert!(
        e.contains("train-labels-idx1-ubyte.gz") && e.contains("index 7"),
        "{e}"
    );
    // Missing file.
    std::fs::remove_file(&lab).unwrap();
    let e = err_text(load());
    assert!(e.contains("train-labels-idx1-ubyte"), "{e}");
    // Missing folder, unknown dataset, unknown split.
    let e = err_text(Dataset::load(
        "fashion-mnist",
        Some(&dir.join("nope")),
        Split::Train,
    ));
    assert!(e.contains("nope"), "{e}");
    assert!(err_text(Dataset::load("imagenet", Some(dir), Split::Train)).contains("imagenet"));
    assert!("val".parse::<Split>().is_err());
}

/// Synthetic CIFAR-10 records: label = (file·7 + r) mod 10, pixel (c, y, x) = c·80 + y + x + r.
/// A gzip bomb is refused on its header, before the rest of the stream is inflated: each
/// file below is a valid gzip start (header + 8 MiB of zeros) cut off in the middle, so a
/// reader that inflated the whole stream first would report a gzip error instead.
#[test]
fn idx_headers_are_checked_before_the_data_is_inflated() {
    let t = TempDir::new("bomb");
    let p = t.0.join("t10k-images-idx3-ubyte.gz");
    let cut = |raw: Vec<u8>| {
        let z = gz(&raw);
        z[..z.len() / 2].to_vec()
    };
    let zeros = vec![0u8; 8 << 20];
    // Bad magic.
    let mut raw = idx_bytes(&[1, 28, 28], &zeros);
    raw[1] = 9;
    std::fs::write(&p, cut(raw)).unwrap();
    let e = read_idx(&p).unwrap_err().to_string();
    assert!(e.contains("magic") && !e.contains("gzip"), "{e}");
    // Dimensions claiming 2^60 bytes, and ones past the reader's cap.
    for dims in [[1u32 << 20, 1 << 20, 1 << 20], [1 << 16, 1 << 16, 2]] {
        std::fs::write(&p, cut(idx_bytes(&dims, &zeros))).unwrap();
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(
            (e.contains("overflow") || e.contains("more than")) && !e.contains("gzip"),
            "{dims:?}: {e}"
        );
    }
    // Dimensions within the cap but more data than they announce: refused, not truncated.
    std::fs::write(&p, gz(&idx_bytes(&[2, 2, 2], &[0u8; 9]))).unwrap();
    let e = read_idx(&p).unwrap_err().to_string();
    assert!(e.contains("need 8 data bytes, file has more"), "{e}");
}

/// A split's two headers are checked against each other before either file's data is
/// read: a labels header claiming 2^32 labels beside 50 images read (or inflated) 4 GB
/// first. Neither file below holds any data, so a reader that read before checking would
/// report a truncated file instead. A file of no images is refused by name, and a gzip
/// stream's trailer is still checked after its last data byte.
#[test]
fn a_split_is_checked_at_its_headers_before_its_data_is_read() {
    let t = TempDir::new("headers-first");
    let dir = &t.0;
    let img = dir.join("train-images-idx3-ubyte");
    let lab = dir.join("train-labels-idx1-ubyte");
    let load = || Dataset::load("fashion-mnist", Some(dir), Split::Train);
    std::fs::write(&img, idx_bytes(&[50, 28, 28], &[])).unwrap();
    std::fs::write(&lab, idx_bytes(&[u32::MAX], &[])).unwrap();
    let e = err_text(load());
    assert!(
        e.contains("train-labels-idx1-ubyte") && e.contains("more than the 1073741824"),
        "{e}"
    );
    std::fs::write(&lab, idx_bytes(&[70], &[])).unwrap();
    let e = err_text(load());
    assert!(e.contains("70 labels for 50 images"), "{e}");
    // No images at all: said so, naming the file (it was "has only 0 examples" later).
    std::fs::write(&img, idx_bytes(&[0, 28, 28], &[])).unwrap();
    std::fs::write(&lab, idx_bytes(&[0], &[])).unwrap();
    let e = err_text(load());
    assert!(e.contains("train-images-idx3-ubyte: holds 0 images"), "{e}");
    // The gzip trailer is still read and checked once the data are: a wrong checksum, a
    // cut trailer or bytes after the stream are errors, not data taken as they came.
    std::fs::remove_file(&img).unwrap();
    std::fs::remove_file(&lab).unwrap();
    write_idx_split(dir, "train", 3, 28, 28, true);
    let gzp = dir.join("train-images-idx3-ubyte.gz");
    let good = std::fs::read(&gzp).unwrap();
    assert_eq!(load().unwrap().len(), 3);
    let n = good.len();
    let mut crc = good.clone();
    crc[n - 8] ^= 0xff;
    let mut tail = good.clone();
    tail.extend_from_slice(b"GARBAGE!");
    for (what, bytes) in [
        ("checksum", crc),
        ("cut", good[..n - 4].to_vec()),
        ("tail", tail),
    ] {
        std::fs::write(&gzp, bytes).unwrap();
        let e = err_text(load());
        assert!(
            e.contains("train-images-idx3-ubyte.gz") && e.contains("gzip"),
            "{what}: {e}"
        );
    }
}

/// A data file that exists but is no regular file (a folder, a dangling link) is named for
/// what it is, not reported as "neither NAME.gz nor NAME found".
#[cfg(unix)]
#[test]
fn a_data_file_that_is_no_regular_file_is_named_for_what_it_is() {
    let t = TempDir::new("not-regular");
    let dir = &t.0;
    write_idx_split(dir, "t10k", 3, 28, 28, false);
    let img = dir.join("t10k-images-idx3-ubyte");
    std::fs::remove_file(&img).unwrap();
    std::fs::create_dir(&img).unwrap();
    let e = err_text(Dataset::load("fashion-mnist", Some(dir), Split::Test));
    assert!(e.contains("is a folder, not a regular file"), "{e}");
    std::fs::remove_dir(&img).unwrap();
    std::os::unix::fs::symlink(dir.join("nowhere"), &img).unwrap();
    let e = err_text(Dataset::load("fashion-mnist", Some(dir), Split::Test));
    assert!(!e.contains("neither"), "{e}");
    assert!(e.contains("t10k-images-idx3-ubyte"), "{e}");
}

#[cfg(unix)]
#[test]
fn data_files_that_are_not_regular_files_are_refused_without_blocking() {
    let t = TempDir::new("fifo-data");
    let p = t.0.join("t10k-labels-idx1-ubyte");
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read_idx(&p).map(|_| ()).map_err(|e| e.to_string()));
    });
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("reading a FIFO blocked");
    let e = r.unwrap_err();
    assert!(e.contains("FIFO"), "{e}");
}

fn cifar_file(path: &Path, file: usize, records: usize) {
    // Record r's pixels are record 0's plus r (mod 256): 256 patterns, copied.
    let patterns: Vec<Vec<u8>> = (0..256)
        .map(|r| {
            let mut p = Vec::with_capacity(3 * 32 * 32);
            for c in 0..3 {
                for y in 0..32 {
                    for x in 0..32 {
                        p.push(((c * 80 + y + x + r) % 256) as u8);
                    }
                }
            }
            p
        })
        .collect();
    let mut v = Vec::with_capacity(records * 3073);
    for r in 0..records {
        v.push(((file * 7 + r) % 10) as u8);
        v.extend_from_slice(&patterns[r % 256]);
    }
    std::fs::write(path, v).unwrap();
}

/// Records in a CIFAR-10 batch file, train or test.
const CIFAR_RECORDS: usize = 10_000;

#[test]
fn cifar10_synthetic_batches() {
    let t = TempDir::new("cifar");
    let dir = t.0.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 1..=5 {
        cifar_file(&dir.join(format!("data_batch_{i}.bin")), i, CIFAR_RECORDS);
    }
    cifar_file(&dir.join("test_batch.bin"), 0, CIFAR_RECORDS);
    // Both the parent folder and the batch folder work.
    let train = Dataset::load("cifar10", Some(&t.0), Split::Train).unwrap();
    let test = Dataset::load("cifar-10", Some(&dir), Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (50_000, 10_000));
    assert_eq!(train.shape, (3, 32, 32));
    // Example 10004 = file 2, record 4: label (14 + 4) % 10 = 8; pixel (c=1, y=2, x=3) =
    // 80+2+3+4.
    assert_eq!(train.labels[10_004], 8);
    assert_eq!(train.image(10_004)[1024 + 2 * 32 + 3], 89);
    assert_eq!(test.labels[..4], [0, 1, 2, 3]);
    drop((train, test));
    // Truncated record.
    let f = dir.join("data_batch_3.bin");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 1]).unwrap();
    let e = err_text(Dataset::load("cifar10", Some(&dir), Split::Train));
    assert!(
        e.contains("data_batch_3.bin") && e.contains("truncated"),
        "{e}"
    );
    // Bad label.
    let mut bytes = bytes;
    bytes[3073] = 11;
    std::fs::write(&f, &bytes).unwrap();
    let e = err_text(Dataset::load("cifar10", Some(&dir), Split::Train));
    assert!(
        e.contains("data_batch_3.bin") && e.contains("record 1"),
        "{e}"
    );
    // Missing file.
    std::fs::remove_file(dir.join("test_batch.bin")).unwrap();
    let e = err_text(Dataset::load("cifar10", Some(&dir), Split::Test));
    assert!(e.contains("test_batch.bin"), "{e}");
}

/// A batch file cut at a record boundary holds whole records, but fewer than a CIFAR-10
/// batch file's 10000: it was read as a smaller data set without a word. It is refused,
/// naming the file and the records found and expected; so is one of more records.
#[test]
fn a_cifar10_batch_of_other_than_10000_records_is_refused() {
    let t = TempDir::new("cifar_short");
    for (records, what) in [
        (CIFAR_RECORDS - 1, "truncated"),
        (3, "truncated"),
        (CIFAR_RECORDS + 1, "not a CIFAR-10 batch file"),
    ] {
        cifar_file(&t.0.join("test_batch.bin"), 0, records);
        let e = err_text(Dataset::load("cifar10", Some(&t.0), Split::Test));
        assert!(
            e.contains("test_batch.bin")
                && e.contains(&format!("{records} records of 3073 bytes"))
                && e.contains("a CIFAR-10 batch file holds 10000")
                && e.contains(what),
            "{records} records: {e}"
        );
    }
    // A whole file, compressed, reads; cut at a record boundary inside the gzip stream, it
    // is refused alike.
    cifar_file(&t.0.join("test_batch.bin"), 0, CIFAR_RECORDS);
    let whole = std::fs::read(t.0.join("test_batch.bin")).unwrap();
    std::fs::write(t.0.join("test_batch.bin"), gz(&whole)).unwrap();
    let test = Dataset::load("cifar10", Some(&t.0), Split::Test).unwrap();
    assert_eq!(test.len(), CIFAR_RECORDS);
    std::fs::write(
        t.0.join("test_batch.bin"),
        gz(&whole[..(CIFAR_RECORDS - 2) * 3073]),
    )
    .unwrap();
    let e = err_text(Dataset::load("cifar10", Some(&t.0), Split::Test));
    assert!(e.contains("9998 records of 3073 bytes"), "{e}");
}

#[test]
fn limpq_data_env_selects_the_folder() {
    // The only test that touches the environment (tests run in parallel threads).
    let t = TempDir::new("env");
    let kind = DatasetKind::parse("fashion-mnist").unwrap();
    std::env::remove_var(DATA_ENV);
    assert_eq!(
        kind.default_dir(),
        Path::new("/usr/share/datasets/fashion-mnist")
    );
    // LIMPQ_DATA as a root holding fashion-mnist/.
    let sub = t.0.join("fashion-mnist");
    std::fs::create_dir_all(&sub).unwrap();
    write_idx_split(&sub, "t10k", 5, 28, 28, true);
    std::env::set_var(DATA_ENV, &t.0);
    assert_eq!(kind.default_dir(), sub);
    assert_eq!(
        Dataset::load("fashion-mnist", None, Split::Test)
            .unwrap()
            .len(),
        5
    );
    // LIMPQ_DATA pointing straight at the folder with the files.
    std::env::set_var(DATA_ENV, &sub);
    assert_eq!(kind.default_dir(), sub);
    assert_eq!(
        Dataset::load("fashion-mnist", None, Split::Test)
            .unwrap()
            .len(),
        5
    );
    std::env::remove_var(DATA_ENV);
}

/// 37 synthetic 28×28 examples, pixel values distinct per example.
fn small_dataset() -> Dataset {
    let n = 37;
    let mut images = Vec::new();
    for i in 0..n {
        for p in 0..784 {
            images.push(((i * 5 + p) % 256) as u8);
        }
    }
    Dataset {
        kind: DatasetKind::FashionMnist,
        images,
        labels: (0..n).map(|i| (i % 10) as u16).collect(),
        shape: (1, 28, 28),
        classes: 10,
        folder: None,
    }
}

fn collect(ds: &Arc<Dataset>, cfg: &LoaderConfig) -> Vec<Batch> {
    Loader::spawn(ds.clone(), cfg.clone()).unwrap().collect()
}

#[test]
fn loader_is_deterministic_and_covers_each_epoch_once() {
    let ds = Arc::new(small_dataset());
    let mut cfg = LoaderConfig::train(&ds, 8, 42, 3);
    cfg.drop_last = false;
    let a = collect(&ds, &cfg);
    let b = collect(&ds, &cfg);
    assert_eq!(
        a, b,
        "same seed, same batches (order, augmentation, values)"
    );
    assert_eq!(a.len(), 3 * 5);
    for epoch in 0..3 {
        let batches: Vec<&Batch> = a.iter().filter(|b| b.epoch == epoch).collect();
        assert_eq!(
            batches.iter().map(|b| b.n).collect::<Vec<_>>(),
            vec![8, 8, 8, 8, 5]
        );
        let ids: Vec<u32> = batches.iter().flat_map(|b| b.ids.clone()).collect();
        let set: HashSet<u32> = ids.iter().copied().collect();
        assert_eq!(
            (ids.len(), set.len()),
            (37, 37),
            "epoch {epoch}: every example exactly once"
        );
        for b in &batches {
            assert_eq!(b.x.len(), b.n * 784);
            assert_eq!(
                b.y,
                b.ids
                    .iter()
                    .map(|i| ds.labels[*i as usize] as u32)
                    .collect::<Vec<_>>()
            );
        }
    }
    let order = |e: usize| {
        a.iter()
            .filter(|b| b.epoch == e)
            .flat_map(|b| b.ids.clone())
            .collect::<Vec<_>>()
    };
    assert_ne!(order(0), order(1), "a new permutation each epoch");
    assert_ne!(order(0), (0..37).collect::<Vec<u32>>(), "shuffled");
    // Another seed, another order; resuming at epoch 1 reproduces epochs 1 and 2.
    let c = collect(
        &ds,
        &LoaderConfig {
            seed: 43,
            ..cfg.clone()
        },
    );
    assert_ne!(c[0].ids, a[0].ids);
    let resumed = collect(
        &ds,
        &LoaderConfig {
            start_epoch: 1,
            epochs: 2,
            ..cfg.clone()
        },
    );
    assert_eq!(resumed[..], a[5..]);
    // drop_last: 4 full batches per epoch.
    let d = collect(
        &ds,
        &LoaderConfig {
            drop_last: true,
            epochs: 1,
            ..cfg.clone()
        },
    );
    assert_eq!(d.iter().map(|b| b.n).collect::<Vec<_>>(), vec![8; 4]);
    assert_eq!(cfg.batches_per_epoch(37), 5);
}

#[test]
fn loader_normalises_crops_and_flips() {
    let ds = Arc::new(small_dataset());
    let norm = DatasetKind::FashionMnist.normalize();
    let (m, s) = (norm.mean[0], norm.std[0]);
    // Eval: file order, exact normalisation.
    let ev = collect(&ds, &LoaderConfig::eval(&ds, 16));
    assert_eq!(ev.iter().map(|b| b.n).collect::<Vec<_>>(), vec![16, 16, 5]);
    assert_eq!(ev[0].ids, (0..16).collect::<Vec<u32>>());
    for (k, v) in ev[1].x[..784].iter().enumerate() {
        let want = (ds.image(16)[k] as f32 / 255.0 - m) / s;
        assert!((v - want).abs() < 1e-5, "pixel {k}: {v} vs {want}");
    }
    // Fashion-MNIST trains with crop pad 2 and flips (the reference recipe).
    let default = LoaderConfig::train(&ds, 8, 7, 1).augment;
    assert_eq!((default.crop_pad, default.hflip), (2, true));
    // Crop only: every image is the original shifted by (dy, dx) in [-2, 2]², zeros
    // (→ -mean/std) where the shift leaves the image.
    let crop_only = LoaderConfig {
        augment: Augment {
            crop_pad: 2,
            hflip: false,
            ..Augment::default()
        },
        ..LoaderConfig::train(&ds, 8, 7, 1)
    };
    let tr = collect(&ds, &crop_only);
    let mut shifts = HashSet::new();
    for b in &tr {
        for (j, id) in b.ids.iter().enumerate() {
            let img = ds.image(*id as usize);
            let got = &b.x[j * 784..(j + 1) * 784];
            let found = (-2i32..=2)
                .flat_map(|dy| (-2i32..=2).map(move |dx| (dy, dx)))
                .find(|&(dy, dx)| {
                    (0..28i32).all(|y| {
                        (0..28i32).all(|x| {
                            let (sy, sx) = (y + dy, x + dx);
                            let p = if (0..28).contains(&sy) && (0..28).contains(&sx) {
                                img[(sy * 28 + sx) as usize]
                            } else {
                                0
                            };
                            (got[(y * 28 + x) as usize] - (p as f32 / 255.0 - m) / s).abs() < 1e-5
                        })
                    })
                });
            shifts.insert(
                found.unwrap_or_else(|| panic!("example {id}: not a shifted crop of the original")),
            );
        }
    }
    assert!(shifts.len() > 5, "crops vary: {shifts:?}");
    // Flip only, no crop: each image equals the original or its mirror, and both occur.
    let cfg = LoaderConfig {
        augment: Augment {
            crop_pad: 0,
            hflip: true,
            ..Augment::default()
        },
        ..LoaderConfig::train(&ds, 8, 9, 1)
    };
    let (mut same, mut mirrored) = (0, 0);
    for b in collect(&ds, &cfg) {
        for (j, id) in b.ids.iter().enumerate() {
            let img = ds.image(*id as usize);
            let got = &b.x[j * 784..(j + 1) * 784];
            let px = |k: usize| (img[k] as f32 / 255.0 - m) / s;
            if (0..784).all(|k| (got[k] - px(k)).abs() < 1e-5) {
                same += 1;
            } else if (0..784).all(|k| (got[k] - px(k / 28 * 28 + 27 - k % 28)).abs() < 1e-5) {
                mirrored += 1;
            } else {
                panic!("example {id}: neither the image nor its mirror");
            }
        }
    }
    assert!(
        same > 0 && mirrored > 0 && same + mirrored == 32,
        "{same} same, {mirrored} mirrored"
    );
}

#[test]
fn loader_stops_when_dropped_and_rejects_bad_config() {
    let ds = Arc::new(small_dataset());
    let mut loader = Loader::spawn(
        ds.clone(),
        LoaderConfig {
            prefetch: 1,
            ..LoaderConfig::train(&ds, 4, 1, 1_000_000)
        },
    )
    .unwrap();
    assert!(loader.next().is_some());
    assert!(loader.next().is_some());
    let t = std::time::Instant::now();
    drop(loader); // joins the thread: returns only if the thread noticed and stopped
    assert!(t.elapsed().as_secs() < 5);
    assert!(Loader::spawn(
        ds.clone(),
        LoaderConfig {
            batch_size: 0,
            ..LoaderConfig::eval(&ds, 4)
        }
    )
    .is_err());
    let bad = LoaderConfig {
        normalize: Normalize {
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
        },
        ..LoaderConfig::eval(&ds, 4)
    };
    assert!(Loader::spawn(ds.clone(), bad.clone()).is_err());
    assert!(make_batch(&ds, &[0], &bad, &mut SeededRng::new(0)).is_err());
    assert!(make_batch(
        &ds,
        &[37],
        &LoaderConfig::eval(&ds, 4),
        &mut SeededRng::new(0)
    )
    .is_err());
}

#[test]
fn subsets() {
    let ds = small_dataset();
    let f = ds.subset(Subset::First(10)).unwrap();
    assert_eq!(f.len(), 10);
    assert_eq!(f.image(9), ds.image(9));
    let r1 = ds.subset(Subset::Random { n: 12, seed: 5 }).unwrap();
    let r2 = ds.subset(Subset::Random { n: 12, seed: 5 }).unwrap();
    let r3 = ds.subset(Subset::Random { n: 12, seed: 6 }).unwrap();
    assert_eq!(r1, r2);
    assert_ne!(r1, r3);
    // Distinct examples (each image in small_dataset is unique).
    let set: HashSet<&[u8]> = (0..12).map(|i| r1.image(i)).collect();
    assert_eq!(set.len(), 12);
    assert!(ds.subset(Subset::First(38)).is_err());
    // An empty subset is refused, not evaluated to a made-up accuracy.
    for empty in [Subset::First(0), Subset::Random { n: 0, seed: 5 }] {
        let e = ds.subset(empty).unwrap_err().to_string();
        assert!(e.contains("subset of 0 examples"), "{e}");
    }
    assert_eq!(ds.subset(Subset::All).unwrap(), ds);
}
