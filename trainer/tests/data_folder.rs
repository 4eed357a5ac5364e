//! Image-folder datasets: class listing, decoding, resizing, cropping and normalisation
//! against a hand computation, determinism, and named errors for corrupt images and class
//! folders that differ between train/ and val/. Tiny PNG and JPEG files written here.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

#[path = "common/scratch.rs"]
mod scratch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use limpq_trainer::data::{
    produce, DataSource, Dataset, DatasetKind, Loader, LoaderConfig, Split, Subset, Transform,
};

fn tmp_root(name: &str) -> (tempfile::TempDir, PathBuf) {
    scratch::dir(&format!("folder-{name}"))
}

/// Pixel (x, y, channel) of test image `k`: distinct values, away from 0 and 255.
fn pix(k: u32, x: u32, y: u32, c: u32) -> u8 {
    (10 + (k * 37 + x * 11 + y * 23 + c * 59) % 230) as u8
}

fn write_rgb(path: &Path, k: u32, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([pix(k, x, y, 0), pix(k, x, y, 1), pix(k, x, y, 2)])
    });
    img.save(path).unwrap();
}

/// `root/{train,val}/{classes}/i.png`, `per` images per class, `w`×`h` RGB.
fn make_folder(root: &Path, classes: &[&str], per: u32, w: u32, h: u32) {
    let mut k = 0;
    for split in ["train", "val"] {
        for c in classes {
            for i in 0..per {
                write_rgb(&root.join(split).join(c).join(format!("{i}.png")), k, w, h);
                k += 1;
            }
        }
    }
}

fn load(
    root: &Path,
    split: Split,
    input: (usize, usize, usize),
    t: &Transform,
) -> Result<Dataset, limpq_trainer::data::DataError> {
    Dataset::load_for(
        &DataSource {
            name: "folder",
            dir: Some(root),
            input: Some(input),
            transform: Some(t),
        },
        split,
    )
}

#[test]
fn classes_are_the_sorted_train_folders_and_labels_follow_them() {
    let (_root_dir, root) = tmp_root("classes");
    make_folder(&root, &["dog", "ant", "cat"], 2, 4, 4);
    // Files that are no images, and hidden ones, are ignored.
    std::fs::write(root.join("train/ant/notes.txt"), "x").unwrap();
    std::fs::write(root.join("train/ant/.hidden.png"), "x").unwrap();
    // A nested folder inside a class is part of the class; a JPEG with an upper-case name too.
    write_rgb(&root.join("train/cat/more/extra.JPG"), 99, 4, 4);
    let ds = load(&root, Split::Train, (3, 4, 4), &Transform::default()).unwrap();
    assert_eq!(ds.kind, DatasetKind::Folder);
    assert_eq!(
        ds.class_names().unwrap(),
        ["ant".to_string(), "cat".into(), "dog".into()]
    );
    assert_eq!(ds.classes, 3);
    assert_eq!(ds.len(), 7);
    assert_eq!(ds.labels, vec![0, 0, 1, 1, 1, 2, 2]);
    let f = ds.folder.as_ref().unwrap();
    assert!(
        f.files[4].ends_with("train/cat/more/extra.JPG"),
        "{:?}",
        f.files
    );
    let val = load(&root, Split::Test, (3, 4, 4), &Transform::default()).unwrap();
    assert_eq!(val.len(), 6);
    assert_eq!(val.labels, vec![0, 0, 1, 1, 2, 2]);
    // The path as the dataset name is the same folder.
    let by_path = Dataset::load_for(
        &DataSource {
            name: root.to_str().unwrap(),
            input: Some((3, 4, 4)),
            ..DataSource::default()
        },
        Split::Train,
    )
    .unwrap();
    assert_eq!(by_path.labels, ds.labels);
    // A subset keeps files and labels together.
    let sub = ds.subset(Subset::First(3)).unwrap();
    assert_eq!(sub.labels, vec![0, 0, 1]);
    assert_eq!(sub.folder.as_ref().unwrap().files, f.files[..3]);
    // Without a model there is no input size to read at.
    let e = Dataset::load("folder", Some(&root), Split::Train).unwrap_err();
    assert!(e.to_string().contains("input size"), "{e}");
}

/// The normalised value the loader must produce for pixel value `p` of channel `c`.
fn norm(p: u8, mean: &[f32], std: &[f32], c: usize) -> f32 {
    (p as f32 / 255.0 - mean[c]) / std[c]
}

#[test]
fn centre_crop_random_crop_flip_and_normalisation_match_a_hand_computation() {
    let (_root_dir, root) = tmp_root("hand");
    // One 6×4 image per split (wider than high): resize 4 keeps it, the crop is 4×4.
    write_rgb(&root.join("train/a/0.png"), 0, 6, 4);
    write_rgb(&root.join("val/a/0.png"), 0, 6, 4);
    let t = Transform {
        resize: 4,
        crop: 4,
        flip: true,
        mean: vec![0.1, 0.2, 0.3],
        std: vec![0.5, 0.25, 0.125],
    };
    let (mean, std) = (t.mean.clone(), t.std.clone());
    let ds = Arc::new(load(&root, Split::Test, (3, 4, 4), &t).unwrap());
    // Evaluation: centre crop, columns 1..5, no flip.
    let b = Loader::spawn(ds.clone(), LoaderConfig::eval(&ds, 1))
        .unwrap()
        .next()
        .unwrap();
    let mut want = Vec::new();
    for c in 0..3 {
        for y in 0..4 {
            for x in 0..4 {
                want.push(norm(pix(0, x + 1, y, c), &mean, &std, c as usize));
            }
        }
    }
    assert_eq!(b.x.len(), want.len());
    for (g, w) in b.x.iter().zip(&want) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }
    // Training: over many epochs every crop offset (0, 1, 2) and both flips appear, and
    // each output is exactly one of them.
    let tr = Arc::new(load(&root, Split::Train, (3, 4, 4), &t).unwrap());
    let cfg = LoaderConfig::train(&tr, 1, 5, 40);
    let mut seen = std::collections::HashSet::new();
    for b in Loader::spawn(tr.clone(), cfg).unwrap() {
        let found = (0..3u32)
            .flat_map(|ox| [(ox, false), (ox, true)])
            .find(|&(ox, flip)| {
                let mut i = 0;
                for c in 0..3 {
                    for y in 0..4 {
                        for x in 0..4u32 {
                            let sx = if flip { 3 - x } else { x };
                            let w = norm(pix(0, sx + ox, y, c), &mean, &std, c as usize);
                            if (b.x[i] - w).abs() > 1e-6 {
                                return false;
                            }
                            i += 1;
                        }
                    }
                }
                true
            });
        seen.insert(found.expect("a training example is a crop of the image, maybe flipped"));
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
}

#[test]
fn resize_grayscale_and_defaults() {
    let (_root_dir, root) = tmp_root("resize");
    // 16×8 gray-valued RGB (R = G = B): resizing the shorter side to 4 gives 8×4, and a
    // 1-channel model reads its luma, the same value.
    for split in ["train", "val"] {
        let p = root.join(split).join("a").join("0.png");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(16, 8, image::Rgb([200, 200, 200]))
            .save(&p)
            .unwrap();
    }
    let t = Transform {
        resize: 4,
        ..Transform::default()
    };
    let ds = Arc::new(load(&root, Split::Test, (1, 4, 4), &t).unwrap());
    let f = ds.folder.as_ref().unwrap();
    // Gray default normalisation.
    assert_eq!(f.settings.normalize.mean, vec![0.449]);
    assert_eq!(f.load(0, None).unwrap(), vec![200u8; 16]);
    assert_eq!(limpq_trainer::data::resized_dims(16, 8, 4), (8, 4));
    assert_eq!(limpq_trainer::data::resized_dims(7, 10, 4), (4, 5));
    // Defaults: resize to 8/7 of the input (256 for 224), flip on, ImageNet statistics.
    let d = load(&root, Split::Test, (3, 224, 224), &Transform::default()).unwrap();
    let s = &d.folder.as_ref().unwrap().settings;
    assert_eq!((s.resize, s.flip), (256, true));
    assert_eq!(s.normalize.std, vec![0.229, 0.224, 0.225]);
    // Settings that cannot work are named.
    for (t, needle) in [
        (
            Transform {
                resize: 3,
                ..Transform::default()
            },
            "resize 3",
        ),
        (
            Transform {
                crop: 5,
                ..Transform::default()
            },
            "crop 5",
        ),
        (
            Transform {
                mean: vec![0.5, 0.5],
                ..Transform::default()
            },
            "mean has 2 values",
        ),
    ] {
        let e = load(&root, Split::Test, (3, 4, 4), &t).unwrap_err();
        assert!(e.to_string().contains(needle), "{e}");
    }
    let e = load(&root, Split::Test, (2, 4, 4), &Transform::default()).unwrap_err();
    assert!(e.to_string().contains("2 input channels"), "{e}");
    let e = Transform::from_ron_str("(resize: 4, colour: true)").unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");
    assert_eq!(
        Transform::from_ron_str("(resize: 36, flip: false)").unwrap(),
        Transform {
            resize: 36,
            flip: false,
            ..Transform::default()
        }
    );
}

#[test]
fn batches_are_deterministic_per_seed_whatever_the_workers() {
    let (_root_dir, root) = tmp_root("determinism");
    make_folder(&root, &["a", "b", "c"], 5, 9, 7);
    let ds = Arc::new(load(&root, Split::Train, (3, 6, 6), &Transform::default()).unwrap());
    let cfg = LoaderConfig::train(&ds, 4, 11, 2);
    let a: Vec<_> = Loader::spawn(ds.clone(), cfg.clone()).unwrap().collect();
    let b: Vec<_> = Loader::spawn(ds.clone(), cfg.clone()).unwrap().collect();
    // One thread, in order.
    let mut c = Vec::new();
    produce(&ds, &cfg, |b| {
        c.push(b);
        true
    })
    .unwrap();
    assert_eq!(a.len(), 2 * (15 / 4));
    assert_eq!(a, b);
    assert_eq!(a, c);
    let other: Vec<_> = Loader::spawn(
        ds.clone(),
        LoaderConfig {
            seed: 12,
            ..cfg.clone()
        },
    )
    .unwrap()
    .collect();
    assert_ne!(a, other);
    // JPEG decodes too (lossy: only the shape and the range are checked).
    let j = root.join("val/a/0.jpg");
    image::RgbImage::from_pixel(9, 7, image::Rgb([90, 120, 150]))
        .save(&j)
        .unwrap();
    let val = load(&root, Split::Test, (3, 6, 6), &Transform::default()).unwrap();
    let at = val
        .folder
        .as_ref()
        .unwrap()
        .files
        .iter()
        .position(|p| *p == j);
    let px = val
        .folder
        .as_ref()
        .unwrap()
        .load(at.unwrap(), None)
        .unwrap();
    assert_eq!(px.len(), 3 * 36);
    assert!(px[..36].iter().all(|v| v.abs_diff(90) <= 3), "{px:?}");
}

#[test]
fn a_corrupt_image_is_an_error_naming_the_file_and_ends_the_loader() {
    let (_root_dir, root) = tmp_root("corrupt");
    make_folder(&root, &["a", "b"], 6, 5, 5);
    let bad = root.join("train/b/3.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really a png").unwrap();
    let garbage = root.join("train/a/1.png");
    std::fs::write(&garbage, b"hello, world").unwrap();
    let ds = Arc::new(load(&root, Split::Train, (3, 4, 4), &Transform::default()).unwrap());
    let mut cfg = LoaderConfig::train(&ds, 3, 1, 3);
    cfg.prefetch = 1;
    let mut loader = Loader::spawn(ds.clone(), cfg).unwrap();
    let e = loop {
        match loader.next_batch() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the loader ended without the error"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(
        e.contains(garbage.to_str().unwrap()) || e.contains(bad.to_str().unwrap()),
        "{e}"
    );
    assert!(e.contains("image"), "{e}");
    // After the error the loader ends (and dropping it does not hang).
    assert!(loader.next().is_none());
    drop(loader);
    // Directly: each file's own message.
    let f = ds.folder.as_ref().unwrap();
    let i = f.files.iter().position(|p| *p == bad).unwrap();
    let e = f.load(i, None).unwrap_err().to_string();
    assert!(e.starts_with(bad.to_str().unwrap()), "{e}");
    assert!(e.contains("cannot decode"), "{e}");
    let i = f.files.iter().position(|p| *p == garbage).unwrap();
    let e = f.load(i, None).unwrap_err().to_string();
    assert!(e.contains("not a PNG or JPEG"), "{e}");
    // A truncated real PNG.
    let bytes = std::fs::read(root.join("train/a/0.png")).unwrap();
    std::fs::write(root.join("train/a/0.png"), &bytes[..bytes.len() / 2]).unwrap();
    let e = f.load(0, None).unwrap_err().to_string();
    assert!(e.contains("train/a/0.png"), "{e}");
}

#[test]
fn class_folders_that_differ_between_splits_are_named() {
    let (_root_dir, root) = tmp_root("classes-differ");
    make_folder(&root, &["a", "b", "c"], 1, 4, 4);
    std::fs::remove_dir_all(root.join("val/b")).unwrap();
    std::fs::create_dir_all(root.join("val/z")).unwrap();
    let e = load(&root, Split::Test, (3, 4, 4), &Transform::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("val"), "{e}");
    assert!(e.contains("missing there: [\"b\"]"), "{e}");
    assert!(e.contains("not in train/: [\"z\"]"), "{e}");
    // The training split alone still loads.
    assert!(load(&root, Split::Train, (3, 4, 4), &Transform::default()).is_ok());
    // No val/ at all, an empty class folder in train/, no train/.
    std::fs::remove_dir_all(root.join("val")).unwrap();
    let e = load(&root, Split::Test, (3, 4, 4), &Transform::default()).unwrap_err();
    assert!(e.to_string().contains("val"), "{e}");
    std::fs::create_dir_all(root.join("train/empty")).unwrap();
    let e = load(&root, Split::Train, (3, 4, 4), &Transform::default()).unwrap_err();
    assert!(e.to_string().contains("train/empty"), "{e}");
    let e = load(
        &root.join("nothing"),
        Split::Train,
        (3, 4, 4),
        &Transform::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("nothing/train"), "{e}");
}

/// A link to a folder that holds it (`ln -s .. up`, `ln -s . again`) made the listing repeat
/// another class's images under this class's label, or never end (two links to `.` grow it
/// exponentially): refused, naming the link. A link to a folder elsewhere is followed.
#[cfg(unix)]
#[test]
fn links_to_a_folder_that_holds_them_are_refused() {
    use std::os::unix::fs::symlink;
    let (_root_dir, root) = tmp_root("links");
    make_folder(&root, &["a", "b"], 2, 4, 4);
    let (_outside_dir, outside) = tmp_root("links-outside");
    write_rgb(&outside.join("extra.png"), 99, 4, 4);
    symlink(&outside, root.join("train/a/more")).unwrap();
    let ds = load(&root, Split::Train, (3, 4, 4), &Transform::default()).unwrap();
    assert_eq!(ds.len(), 5);
    for (link, to) in [("up", ".."), ("again", ".")] {
        let at = root.join("train/a").join(link);
        symlink(to, &at).unwrap();
        let e = load(&root, Split::Train, (3, 4, 4), &Transform::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(at.to_str().unwrap()) && e.contains("the listing would loop"),
            "{e}"
        );
        std::fs::remove_file(&at).unwrap();
    }
}

/// A long, thin picture resized on its shorter side grows on its longer one: 1×65536 at 16384
/// is 2^30 pixels, which was allocated (17 GB at the default channel count) or, past u32,
/// panicked the loader with an error naming no file. Refused, naming the file.
#[test]
fn a_picture_that_would_resize_past_the_limit_is_refused_naming_it() {
    let (_root_dir, root) = tmp_root("thin");
    make_folder(&root, &["a"], 1, 4, 4);
    let thin = root.join("train/a/thin.png");
    image::GrayImage::from_pixel(1, 65536, image::Luma([7]))
        .save(&thin)
        .unwrap();
    let t = Transform {
        resize: 16384,
        ..Transform::default()
    };
    let ds = load(&root, Split::Train, (1, 4, 4), &t).unwrap();
    let f = ds.folder.as_ref().unwrap();
    let i = f.files.iter().position(|p| *p == thin).unwrap();
    let e = f.load(i, None).unwrap_err().to_string();
    assert!(
        e.starts_with(thin.to_str().unwrap())
            && e.contains("1×65536 pixels resized to 16384×1073741824")
            && e.contains("more than 67108864 pixels"),
        "{e}"
    );
    assert_eq!(
        limpq_trainer::data::resized_dims(1, usize::MAX, 8).1,
        usize::MAX
    );
}

/// A class folder whose name is not UTF-8 was shown with a replacement character and then
/// looked for under that changed name ("No such file"): refused, saying why.
#[cfg(target_os = "linux")]
#[test]
fn a_class_name_that_is_not_utf8_is_refused_saying_so() {
    use std::os::unix::ffi::OsStrExt;
    let (_root_dir, root) = tmp_root("nonutf8");
    make_folder(&root, &["a"], 1, 4, 4);
    let odd = std::ffi::OsStr::from_bytes(b"b\xff");
    write_rgb(&root.join("train").join(odd).join("0.png"), 1, 4, 4);
    let e = load(&root, Split::Train, (3, 4, 4), &Transform::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not UTF-8"), "{e}");
}
