//! Image-folder datasets, the torchvision `ImageFolder` layout: `ROOT/train/<class>/*.png`
//! (or `.jpg`, `.jpeg`) and `ROOT/val/<class>/…`. The classes are the sorted names of the
//! sub-folders of `train/`; `val/` must have the same ones. Only the paths and labels are
//! held in memory: each image is read and decoded (the `image` crate, PNG and JPEG) when a
//! batch needs it, in the loader's worker threads, so folders of any size work.
//!
//! One example: decode, convert to the model's channels (grayscale or RGB), resize so that the
//! shorter side is [`Transform::resize`] (bilinear), crop the model's input size (at a random
//! offset for training, in the centre for evaluation), then the loader flips and normalises.

use std::path::{Path, PathBuf};

use limpq_solver::format::versioned::ron_from_str;
use serde::{Deserialize, Serialize};

use super::{format_err, DataError, Normalize, Split};
use crate::rng::SeededRng;

/// Largest image file read (a corrupt or hostile file must not allocate without bound).
const MAX_FILE: u64 = 256 << 20;
/// Largest decoded image accepted, in pixels (64 megapixels).
const MAX_PIXELS: u64 = 64 << 20;

/// File name extensions read (case-insensitive); other files in a class folder are ignored.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// ImageNet's per-channel mean and std (RGB, pixels in [0, 1]): the default normalisation
/// of a 3-channel folder, as torchvision's pretrained models expect.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How an image folder's pictures become model inputs; every field may be left out.
///
/// ```text
/// transform: (resize: 256, crop: 224, flip: true, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    /// The shorter side after resizing, in pixels (default, 0: the input's longer side ×
    /// 8/7, rounded: 256 for a 224 input, 32 for 28). At least the input's longer side.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resize: u32,
    /// The crop's side: the model's input size (it is not resized after cropping); given
    /// (not 0), it must equal the input's height and width. A random crop when training,
    /// the centre one when evaluating.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crop: u32,
    /// Mirror left-right with probability 1/2 when training (default: true).
    #[serde(default = "yes")]
    pub flip: bool,
    /// Per-channel mean of pixels in [0, 1] (default, empty: ImageNet's for RGB, 0.449 for
    /// gray).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mean: Vec<f32>,
    /// Per-channel std (default, empty: ImageNet's for RGB, 0.226 for gray).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub std: Vec<f32>,
}

impl Default for Transform {
    fn default() -> Self {
        Transform {
            resize: 0,
            crop: 0,
            flip: true,
            mean: Vec::new(),
            std: Vec::new(),
        }
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn yes() -> bool {
    true
}

impl Transform {
    /// Reads the RON form, `(resize: 36, flip: false)`; errors say what is accepted.
    pub fn from_ron_str(text: &str) -> Result<Transform, DataError> {
        ron_from_str(text).map_err(|e| {
            DataError::Invalid(format!(
                "transform {text:?}: {e} (expected e.g. `(resize: 256, crop: 224, flip: true, \
                 mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])`)"
            ))
        })
    }

    /// One line of RON, as a checkpoint's meta records it.
    pub fn to_ron(&self) -> String {
        ron::to_string(self).unwrap_or_default()
    }
}

/// The settings of one folder, resolved against the model's input.
#[derive(Clone, Debug, PartialEq)]
pub struct FolderSettings {
    /// (channels, height, width) of every decoded example: the model's input.
    pub shape: (usize, usize, usize),
    pub resize: u32,
    pub flip: bool,
    pub normalize: Normalize,
}

impl FolderSettings {
    /// `t` for a model whose input is `input` (channels, height, width).
    pub fn new(input: (usize, usize, usize), t: &Transform) -> Result<Self, DataError> {
        let (c, h, w) = input;
        if c != 1 && c != 3 {
            return Err(DataError::Invalid(format!(
                "image folder: the model takes {c} input channels; images are read as gray (1) \
                 or RGB (3)"
            )));
        }
        if h == 0 || w == 0 {
            return Err(DataError::Invalid(format!(
                "image folder: model input {c}×{h}×{w} is empty"
            )));
        }
        if t.crop != 0 {
            let crop = t.crop;
            if crop as usize != h || crop as usize != w {
                return Err(DataError::Invalid(format!(
                    "transform: crop {crop} must be the model's input size {h}×{w} (the crop is \
                     what the model sees; change `resize` to keep more or less of the image)"
                )));
            }
        }
        let side = h.max(w) as u32;
        let resize = match t.resize {
            0 => ((side as f64) * 8.0 / 7.0).round() as u32,
            r => r,
        };
        if resize < side {
            return Err(DataError::Invalid(format!(
                "transform: resize {resize} is smaller than the crop {h}×{w} (the shorter side \
                 after resizing must be at least the input's longer side, {side})"
            )));
        }
        if resize > 16384 {
            return Err(DataError::Invalid(format!(
                "transform: resize {resize} is larger than 16384"
            )));
        }
        let (dm, ds): (Vec<f32>, Vec<f32>) = if c == 3 {
            (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec())
        } else {
            (vec![0.449], vec![0.226])
        };
        let or = |v: &Vec<f32>, d: Vec<f32>| if v.is_empty() { d } else { v.clone() };
        let normalize = Normalize {
            mean: or(&t.mean, dm),
            std: or(&t.std, ds),
        };
        for (what, v) in [("mean", &normalize.mean), ("std", &normalize.std)] {
            if v.len() != c {
                return Err(DataError::Invalid(format!(
                    "transform: {what} has {} values for {c} channels",
                    v.len()
                )));
            }
        }
        if normalize.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || normalize.mean.iter().any(|m| !m.is_finite())
        {
            return Err(DataError::Invalid(
                "transform: every std must be finite and > 0, every mean finite".into(),
            ));
        }
        Ok(Self {
            shape: input,
            resize,
            flip: t.flip,
            normalize,
        })
    }
}

/// The examples of one split of a folder: their files, labels and class names.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageFolder {
    /// The split's folder (`ROOT/train` or `ROOT/val`).
    pub dir: PathBuf,
    /// Class names, sorted (label i is `classes[i]`), the same for both splits.
    pub classes: Vec<String>,
    /// One file per example, in order (class by class, sorted paths within a class).
    pub files: Vec<PathBuf>,
    pub settings: FolderSettings,
}

/// The sorted names of the sub-folders of `dir` (hidden ones skipped).
fn class_dirs(dir: &Path) -> Result<Vec<String>, DataError> {
    let io = |e| DataError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let raw = entry.file_name();
        let lossy = raw.to_string_lossy();
        if lossy.starts_with('.') {
            continue;
        }
        // Follows symbolic links (a folder of links to class folders is common).
        if entry.path().is_dir() {
            // A class is known by its name (in checkpoints, reports, `eval`): one that is
            // not UTF-8 was shown changed and then looked for under the changed name.
            let Some(name) = raw.to_str() else {
                return Err(format_err(
                    &entry.path(),
                    format!(
                        "the class folder's name ({lossy}) is not UTF-8; rename it (class \
                         names are kept as text)"
                    ),
                ));
            };
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Image files under `dir` (recursively; sorted by path). Links are followed, but a link to
/// a folder that holds it (`ln -s .. up`, `ln -s . again`) is refused: it made the listing
/// repeat images under the wrong class, or never end.
fn image_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    image_files_within(dir, &mut Vec::new(), out)
}

/// [`image_files`], with the real paths of the folders being listed (`dir`'s ancestors in
/// this walk).
fn image_files_within(
    dir: &Path,
    open: &mut Vec<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<(), DataError> {
    let io = |e| DataError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let real = std::fs::canonicalize(dir).map_err(io)?;
    if open.contains(&real) {
        return Err(format_err(
            dir,
            format!(
                "a link to {}, a folder that holds it: the listing would loop; remove the link",
                real.display()
            ),
        ));
    }
    open.push(real);
    let mut entries: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            entries.push(entry.path());
        }
    }
    entries.sort();
    for p in entries {
        if p.is_dir() {
            image_files_within(&p, open, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(p);
        }
    }
    open.pop();
    Ok(())
}

/// The folder of `split`: `train/`, and `val/` (or `test/` when there is no `val/`).
pub fn split_dir(root: &Path, split: Split) -> PathBuf {
    match split {
        Split::Train => root.join("train"),
        Split::Test => {
            let val = root.join("val");
            let test = root.join("test");
            if !val.is_dir() && test.is_dir() {
                test
            } else {
                val
            }
        }
    }
}

/// Differences between two class lists, for the error when `val/` and `train/` disagree:
/// the first [`DIFF_SHOWN`] of each side, and how many more. Sets, not a search of one list
/// per entry of the other, so that tens of thousands of class folders do not make the
/// error take minutes (or fill a screen).
fn class_diff(train: &[String], other: &[String]) -> String {
    use std::collections::HashSet;
    let in_train: HashSet<&str> = train.iter().map(String::as_str).collect();
    let in_other: HashSet<&str> = other.iter().map(String::as_str).collect();
    let missing: Vec<&String> = train
        .iter()
        .filter(|c| !in_other.contains(c.as_str()))
        .collect();
    let extra: Vec<&String> = other
        .iter()
        .filter(|c| !in_train.contains(c.as_str()))
        .collect();
    let list = |v: &[&String]| {
        let more = v.len().saturating_sub(DIFF_SHOWN);
        let shown = &v[..v.len().min(DIFF_SHOWN)];
        if more > 0 {
            format!("{shown:?} and {more} more")
        } else {
            format!("{shown:?}")
        }
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing there: {}", list(&missing)));
    }
    if !extra.is_empty() {
        parts.push(format!("not in train/: {}", list(&extra)));
    }
    parts.join("; ")
}

/// How many class names of each side [`class_diff`] lists.
const DIFF_SHOWN: usize = 10;

impl ImageFolder {
    /// The classes of the folder at `root`, as [`ImageFolder::open`] reads them: the sorted
    /// names of the sub-folders of `train/` (label i is the i-th). Lists those folders
    /// only, not their images. Refused when there are none or more than a label holds.
    pub fn class_names(root: &Path) -> Result<Vec<String>, DataError> {
        let train_dir = split_dir(root, Split::Train);
        let classes = class_dirs(&train_dir)?;
        if classes.is_empty() {
            return Err(format_err(
                &train_dir,
                "no class folders (expected one sub-folder of images per class)",
            ));
        }
        if classes.len() > u16::MAX as usize {
            return Err(format_err(
                &train_dir,
                format!(
                    "{} classes; at most {} are supported",
                    classes.len(),
                    u16::MAX
                ),
            ));
        }
        Ok(classes)
    }

    /// Lists `split` of the folder at `root`; returns it and each example's label.
    pub fn open(
        root: &Path,
        split: Split,
        settings: FolderSettings,
    ) -> Result<(ImageFolder, Vec<u16>), DataError> {
        let train_dir = split_dir(root, Split::Train);
        let dir = split_dir(root, split);
        for d in [&train_dir, &dir] {
            if !d.is_dir() {
                return Err(DataError::Io {
                    path: d.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "image folder split not found (expected ROOT/train/<class>/*.png|jpg and \
                         ROOT/val/<class>/…)",
                    ),
                });
            }
        }
        let classes = ImageFolder::class_names(root)?;
        if split == Split::Test {
            let here = class_dirs(&dir)?;
            if here != classes {
                return Err(format_err(
                    &dir,
                    format!(
                        "class folders differ from {}'s ({}); both splits must have the same \
                         classes",
                        train_dir.display(),
                        class_diff(&classes, &here)
                    ),
                ));
            }
        }
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let before = files.len();
            image_files(&dir.join(class), &mut files)?;
            if files.len() == before && split == Split::Train {
                return Err(format_err(
                    &dir.join(class),
                    format!(
                        "class folder holds no image (.{})",
                        IMAGE_EXTENSIONS.join(", .")
                    ),
                ));
            }
            labels.resize(files.len(), label as u16);
        }
        if files.is_empty() {
            return Err(format_err(
                &dir,
                format!(
                    "no image (.{}) in any class folder",
                    IMAGE_EXTENSIONS.join(", .")
                ),
            ));
        }
        Ok((
            ImageFolder {
                dir,
                classes,
                files,
                settings,
            },
            labels,
        ))
    }

    /// The same folder with only the examples `ids`.
    pub fn select(&self, ids: &[usize]) -> ImageFolder {
        ImageFolder {
            files: ids.iter().map(|&i| self.files[i].clone()).collect(),
            ..self.clone_meta()
        }
    }

    fn clone_meta(&self) -> ImageFolder {
        ImageFolder {
            dir: self.dir.clone(),
            classes: self.classes.clone(),
            files: Vec::new(),
            settings: self.settings.clone(),
        }
    }

    /// Example `i` as pixels `[c, h, w]` of the model's input: decoded, converted, resized,
    /// and cropped at a random offset drawn from `rng` (row, then column) or, without one,
    /// in the centre. Errors name the file.
    pub fn load(&self, i: usize, rng: Option<&mut SeededRng>) -> Result<Vec<u8>, DataError> {
        let path = &self.files[i];
        let bytes = limpq_io::files::read_regular(path, MAX_FILE).map_err(|e| DataError::Io {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let (c, h, w) = self.settings.shape;
        let plane = decode(path, &bytes, c)?;
        let (pw, ph) = (plane.width as usize, plane.height as usize);
        let (nw, nh) = resized_dims(pw, ph, self.settings.resize as usize);
        // A long, thin picture resized on its short side grows on its long one: 1×65536
        // at 16384 is 2^38 pixels. Held to the decoder's own limit, naming the file.
        if (nw as u64).saturating_mul(nh as u64) > MAX_PIXELS {
            return Err(format_err(
                path,
                format!(
                    "image of {pw}×{ph} pixels resized to {nw}×{nh} (its shorter side to \
                     {}): more than {MAX_PIXELS} pixels",
                    self.settings.resize
                ),
            ));
        }
        let plane = if (nw, nh) == (pw, ph) {
            plane
        } else {
            plane.resize(nw, nh)
        };
        let (oy, ox) = match rng {
            Some(r) => (r.below(nh - h + 1), r.below(nw - w + 1)),
            None => ((nh - h) / 2, (nw - w) / 2),
        };
        let mut out = vec![0u8; c * h * w];
        for ch in 0..c {
            for y in 0..h {
                let row = ((oy + y) * nw + ox) * c;
                for x in 0..w {
                    out[(ch * h + y) * w + x] = plane.data[row + x * c + ch];
                }
            }
        }
        Ok(out)
    }
}

/// The size after resizing the shorter side to `side` (the longer one scaled alike and
/// rounded down, as torchvision's `Resize(int)`; never below `side`).
pub fn resized_dims(w: usize, h: usize, side: usize) -> (usize, usize) {
    // Saturating: a size past any limit is refused by the caller, not wrapped.
    if w <= h {
        (side, (h.saturating_mul(side) / w.max(1)).max(side))
    } else {
        ((w.saturating_mul(side) / h.max(1)).max(side), side)
    }
}

/// Interleaved pixels (`c` values per pixel) of one decoded image.
struct Plane {
    width: u32,
    height: u32,
    channels: usize,
    data: Vec<u8>,
}

impl Plane {
    /// Bilinear resize (the `image` crate's triangle filter).
    fn resize(self, w: usize, h: usize) -> Plane {
        use image::imageops::{resize, FilterType};
        let data = if self.channels == 1 {
            let img =
                image::GrayImage::from_raw(self.width, self.height, self.data).unwrap_or_default();
            resize(&img, w as u32, h as u32, FilterType::Triangle).into_raw()
        } else {
            let img =
                image::RgbImage::from_raw(self.width, self.height, self.data).unwrap_or_default();
            resize(&img, w as u32, h as u32, FilterType::Triangle).into_raw()
        };
        Plane {
            width: w as u32,
            height: h as u32,
            channels: self.channels,
            data,
        }
    }
}

/// Decodes a PNG or JPEG (recognised by its content) to `channels` (1: luma, 3: RGB).
fn decode(path: &Path, bytes: &[u8], channels: usize) -> Result<Plane, DataError> {
    let bad = |what: String| format_err(path, what);
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(format!("cannot read image: {e}")))?;
    if reader.format().is_none() {
        return Err(bad(format!(
            "not a PNG or JPEG image (first bytes {:02x?})",
            &bytes[..bytes.len().min(8)]
        )));
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| bad(format!("cannot decode image (corrupt or unsupported): {e}")))?;
    let (width, height) = (img.width(), img.height());
    if width == 0 || height == 0 || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(bad(format!(
            "image of {width}×{height} pixels (accepted: 1 to {MAX_PIXELS} pixels)"
        )));
    }
    let data = if channels == 1 {
        img.into_luma8().into_raw()
    } else {
        img.into_rgb8().into_raw()
    };
    Ok(Plane {
        width,
        height,
        channels,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each side's first names in order, then how many more; many classes stay quick.
    #[test]
    fn class_diff_lists_the_first_names_of_each_side() {
        let names =
            |r: std::ops::Range<usize>| -> Vec<String> { r.map(|i| format!("c{i}")).collect() };
        assert_eq!(
            class_diff(&names(0..3), &names(1..4)),
            r#"missing there: ["c0"]; not in train/: ["c3"]"#
        );
        // 60,000 classes a side, half of them shared: ~0.1 s; a search per name took ~13 s.
        let t = std::time::Instant::now();
        let d = class_diff(&names(0..60_000), &names(30_000..90_000));
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        assert!(
            d.starts_with(r#"missing there: ["c0", "c1", "c2", "#),
            "{d}"
        );
        assert!(
            d.contains(r#""c9"] and 29990 more; not in train/: ["c60000", "#),
            "{d}"
        );
        assert!(d.ends_with(r#""c60009"] and 29990 more"#), "{d}");
    }
}
