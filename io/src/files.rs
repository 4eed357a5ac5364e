//! Durable atomic writes and bounded reads.
//!
//! Every file limpq writes goes through [`write_atomic`]; every file it reads through
//! [`read_bounded`] or [`read_regular`] with a cap that fits what the file holds
//! ([`MAX_TEXT`] for RON/JSON documents).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The cap on a text document (indicator, policy, frontier, resource, model, job files):
/// 64 MiB, hundreds of times the largest real one.
pub const MAX_TEXT: u64 = 64 << 20;

/// Why a file could not be read or written; always names the file.
#[derive(Debug)]
pub struct FileError {
    path: PathBuf,
    kind: ErrorKind,
}

/// What went wrong with a file.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operating system refused an operation (`what` says which: "cannot read", …).
    Io {
        what: &'static str,
        source: io::Error,
    },
    /// The path is not a regular file (`is` says what it is), so it is neither read as a
    /// document nor replaced by a write.
    NotRegular { is: &'static str },
    /// The file is larger than the reader accepts.
    TooLarge { limit: u64 },
    /// The file is not valid UTF-8 text.
    NotText,
    /// The text does not parse as the expected document.
    Parse { format: Format, message: String },
}

impl FileError {
    fn new(path: &Path, kind: ErrorKind) -> FileError {
        FileError {
            path: path.to_path_buf(),
            kind,
        }
    }

    fn io(path: &Path, what: &'static str, source: io::Error) -> FileError {
        FileError::new(path, ErrorKind::Io { what, source })
    }

    /// The file this error is about.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.kind {
            ErrorKind::Io { what, source } => write!(f, "{what} {p}: {source}"),
            ErrorKind::NotRegular { is } => write!(f, "{p} is {is}, not a regular file"),
            ErrorKind::TooLarge { limit } => {
                write!(
                    f,
                    "{p} is larger than the {} this reader accepts",
                    bytes(*limit)
                )
            }
            ErrorKind::NotText => write!(f, "{p} is not UTF-8 text"),
            ErrorKind::Parse { format, message } => write!(f, "{p}: {format}: {message}"),
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn bytes(n: u64) -> String {
    if n >= 1 << 30 && n % (1 << 30) == 0 {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

/// What a file type is, in words, for a refusal.
fn describe(ft: &fs::FileType) -> &'static str {
    if ft.is_dir() {
        return "a folder";
    }
    if ft.is_symlink() {
        return "a symbolic link";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// Who may read a written file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// As any new file: 0666 less the umask.
    Default,
    /// The owner only (0600): daemon state, job specs.
    Private,
}

/// Writes `bytes` to `path` so that a crash or a full disk leaves the old file or the new
/// one, never a mix. A file replaced keeps its permissions.
///
/// Refuses when `path` exists and is not a regular file (a symbolic link, FIFO, device,
/// socket or folder), so `-o /dev/null` cannot turn a device into a file. The data go to a
/// temporary file with a unique name in the same folder (created exclusively), which is
/// fsynced and renamed over `path`; then the folder is fsynced so the rename survives a
/// power cut. On any failure the temporary file is removed; one that a process killed
/// mid-write left behind is removed by the next write of the same file (on Unix).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic_with(path, bytes, Access::Default)
}

/// [`write_atomic`] with the file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic_with(path, bytes, Access::Private)
}

/// [`write_atomic`] with a choice of [`Access`].
pub fn write_atomic_with(path: &Path, bytes: &[u8], access: Access) -> Result<(), FileError> {
    let (name, dir) = target(path)?;
    remove_stale_temps(name, dir);
    let tmp = dir.join(temp_name(name));
    let written = write_temp(path, &tmp, bytes, access).and_then(|()| {
        // Checked again right before the rename: what the rename replaces is what we saw.
        refuse_non_regular(path)?;
        fs::rename(&tmp, path).map_err(|e| FileError::io(path, "cannot replace", e))
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Checks, before long work whose result goes to `path`, that [`write_atomic`] could write
/// it: `path` names a file, is a regular file or absent, and its folder exists. A run that
/// would end by failing to write (a mistyped folder, `-o` on a device) fails at once
/// instead. The write itself can still fail later (a full disk, the folder removed
/// meanwhile), and says so then.
pub fn check_writable(path: &Path) -> Result<(), FileError> {
    target(path).map(|_| ())
}

/// The first output that is one of `inputs` or an earlier output, as a message naming both
/// by the flag or field that gave them; `None` when every output is distinct. Files are
/// compared as [`same_file`] does, and two outputs also by their absolute paths (not yet
/// written, they are equal when spelled alike). An absent entry (`None`) is skipped.
pub fn output_clash<'a>(
    outputs: &[(&'a str, Option<&'a Path>)],
    inputs: &[(&'a str, Option<&'a Path>)],
) -> Option<String> {
    let given = |v: &[(&'a str, Option<&'a Path>)]| -> Vec<(&'a str, &'a Path)> {
        v.iter().filter_map(|&(f, p)| Some((f, p?))).collect()
    };
    let (outputs, inputs) = (given(outputs), given(inputs));
    for (i, &(flag, out)) in outputs.iter().enumerate() {
        for &(other, input) in &inputs {
            if same_file(out, input) {
                return Some(format!(
                    "{flag} {} is the same file as {other} {}: writing it would replace that \
                     input; give another path",
                    out.display(),
                    input.display()
                ));
            }
        }
        for &(other, out2) in &outputs[..i] {
            let spelled_alike = matches!(
                (std::path::absolute(out), std::path::absolute(out2)),
                (Ok(x), Ok(y)) if x == y
            );
            if spelled_alike || same_file(out, out2) {
                return Some(format!(
                    "{other} and {flag} name the same file ({}): one would replace the \
                     other; give two paths",
                    out.display()
                ));
            }
        }
    }
    None
}

/// Whether `a` and `b` name one existing file, however each is spelled (`./x` and `x`, a
/// symbolic link and its target, two hard links): on Unix the same device and inode,
/// elsewhere the same canonical path (hard links are not seen there). False when either
/// is absent or cannot be examined.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (fs::metadata(a), fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (fs::canonicalize(a), fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// What a write to `path` needs, checked in this order: its file name, `path` a regular
/// file or absent, and its folder, which exists. Returns the name and the folder.
fn target(path: &Path) -> Result<(&std::ffi::OsStr, &Path), FileError> {
    let name = path.file_name().ok_or_else(|| {
        FileError::new(
            path,
            ErrorKind::NotRegular {
                is: "not a file name",
            },
        )
    })?;
    refuse_non_regular(path)?;
    Ok((name, folder_of(path)?))
}

/// The folder `path` is written into, which must exist and be a folder; errors name `path`
/// (the file asked for, not the temporary file a write makes beside it).
fn folder_of(path: &Path) -> Result<&Path, FileError> {
    let dir = parent(path);
    let why = match fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(dir),
        Ok(_) => io::Error::other(format!("{} is not a folder", dir.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => io::Error::new(
            io::ErrorKind::NotFound,
            format!("its folder {} does not exist", dir.display()),
        ),
        Err(e) => e,
    };
    Err(FileError::io(path, "cannot write", why))
}

/// Serialises `value` as RON or JSON by `path`'s extension and writes it atomically.
pub fn write_document<T: Serialize>(path: &Path, value: &T) -> Result<(), FileError> {
    let text = Format::of(path).to_string(value).map_err(|message| {
        FileError::new(
            path,
            ErrorKind::Parse {
                format: Format::of(path),
                message,
            },
        )
    })?;
    write_atomic(path, text.as_bytes())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `.NAME.PID.N.NANOS.tmp`: unique among this process's writes (N counts) and other
/// processes' (the pid), hidden, and recognisable as ours.
fn temp_name(name: &std::ffi::OsStr) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        ".{}.{}.{n}.{nanos:x}.tmp",
        name.to_string_lossy(),
        std::process::id()
    )
}

/// Removes the temporary files ([`temp_name`]) that earlier writes of `name` in `dir` left
/// behind when their process ended mid-write (Ctrl-C, a kill, a power cut): those of a
/// process that no longer runs. This process's own, and any of a live process (one
/// writing the same file now), are left. Best effort: a file that cannot be listed or
/// removed is left as it is. The pid is looked up on this machine: two machines writing
/// one file of a shared folder at once race anyway. On systems other than Unix nothing is
/// removed (no check of a process's life without more code than the stray file is worth).
fn remove_stale_temps(name: &std::ffi::OsStr, dir: &Path) {
    #[cfg(unix)]
    {
        let prefix = format!(".{}.", name.to_string_lossy());
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(pid) = file
                .to_str()
                .and_then(|f| f.strip_prefix(&prefix))
                .and_then(|rest| rest.strip_suffix(".tmp"))
                .and_then(temp_pid)
            else {
                continue;
            };
            if pid != std::process::id() && !process_runs(pid) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (name, dir);
}

/// The pid of a temporary file's `PID.N.NANOS` (what [`temp_name`] puts between the name
/// and `.tmp`), or `None` when the text is not of that form.
#[cfg(unix)]
fn temp_pid(middle: &str) -> Option<u32> {
    let mut parts = middle.split('.');
    let (pid, n, nanos) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |t: &str, radix: u32| !t.is_empty() && t.chars().all(|c| c.is_digit(radix));
    if parts.next().is_some() || !digits(pid, 10) || !digits(n, 10) || !digits(nanos, 16) {
        return None;
    }
    pid.parse().ok()
}

/// Whether a process with this pid exists (when unsure, it does).
#[cfg(unix)]
fn process_runs(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: `kill` with signal 0 sends nothing; it only checks that the process exists
    // and may be signalled. It takes two integers and touches no memory of ours. `pid` is
    // positive, so it names one process, never a group or every process.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn refuse_non_regular(path: &Path) -> Result<(), FileError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(m) => Err(FileError::new(
            path,
            ErrorKind::NotRegular {
                is: describe(&m.file_type()),
            },
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::io(path, "cannot inspect", e)),
    }
}

/// Writes `tmp`, the temporary file for `path`; errors name `path`, the file the caller
/// asked for.
fn write_temp(path: &Path, tmp: &Path, bytes: &[u8], access: Access) -> Result<(), FileError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(match access {
            Access::Default => 0o666,
            Access::Private => 0o600,
        });
    }
    let mut f = opts
        .open(tmp)
        .map_err(|e| FileError::io(path, "cannot create the temporary file for", e))?;
    // A file replaced keeps its permissions (a policy made private stays so), less the
    // set-id bits; a new one gets the umask's.
    #[cfg(unix)]
    if access == Access::Default {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = fs::symlink_metadata(path) {
            if m.file_type().is_file() {
                let mode = m.permissions().mode() & 0o777;
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| FileError::io(path, "cannot set the permissions of", e))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = access;
    f.write_all(bytes)
        .map_err(|e| FileError::io(path, "cannot write", e))?;
    f.sync_all()
        .map_err(|e| FileError::io(path, "cannot sync", e))
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| FileError::io(dir, "cannot sync folder", e))
    }
    #[cfg(not(unix))]
    {
        // Windows cannot open a folder as a file; NTFS journals the rename itself.
        let _ = dir;
        Ok(())
    }
}

/// Reads at most `limit` bytes of `path`, whatever it is (a regular file, a pipe, a
/// device): a larger file is an error, found from its size when it has one, else after
/// `limit + 1` bytes, so `/dev/zero` costs `limit` bytes of memory, not all of it.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let f = File::open(path).map_err(|e| FileError::io(path, "cannot read", e))?;
    read_open(path, f, limit)
}

/// Reads a regular file of at most `limit` bytes. Anything else (FIFO, device, socket,
/// folder) is refused without blocking: the file is opened non-blocking and checked before
/// a byte is read, so a FIFO with no writer cannot stall the caller.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let f = open_regular(path)?;
    read_open(path, f, limit)
}

/// Opens a regular file for reading, refusing anything else without blocking on it.
pub fn open_regular(path: &Path) -> Result<File, FileError> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. It has
        // no effect on reads of regular files, the only ones that go on.
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let f = opts
        .open(path)
        .map_err(|e| FileError::io(path, "cannot read", e))?;
    let ft = f
        .metadata()
        .map_err(|e| FileError::io(path, "cannot inspect", e))?
        .file_type();
    if !ft.is_file() {
        return Err(FileError::new(
            path,
            ErrorKind::NotRegular { is: describe(&ft) },
        ));
    }
    Ok(f)
}

fn read_open(path: &Path, f: File, limit: u64) -> Result<Vec<u8>, FileError> {
    let too_large = || FileError::new(path, ErrorKind::TooLarge { limit });
    let len = match f.metadata() {
        Ok(m) if m.is_file() => Some(m.len()),
        _ => None,
    };
    if len.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    if let Some(n) = len {
        // The file's own size, so the buffer is allocated once; `limit` bounds it.
        buf.reserve(n as usize);
    }
    f.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| FileError::io(path, "cannot read", e))?;
    if buf.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(buf)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read_bounded(path, limit)?)
        .map_err(|_| FileError::new(path, ErrorKind::NotText))
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_text(path: &Path, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read_regular(path, limit)?)
        .map_err(|_| FileError::new(path, ErrorKind::NotText))
}

/// Reads a RON or JSON document (by extension, [`Format::of`]) of at most [`MAX_TEXT`]
/// bytes and parses it with `parse`, which gets the text and its format. Errors name the
/// file.
pub fn read_document_with<T, E: fmt::Display>(
    path: &Path,
    parse: impl FnOnce(&str, Format) -> Result<T, E>,
) -> Result<T, FileError> {
    let text = read_text(path, MAX_TEXT)?;
    let format = Format::of(path);
    parse(&text, format).map_err(|e| {
        FileError::new(
            path,
            ErrorKind::Parse {
                format,
                message: e.to_string(),
            },
        )
    })
}

/// Reads a RON or JSON document into any deserialisable type.
pub fn read_document<T: DeserializeOwned>(path: &Path) -> Result<T, FileError> {
    read_document_with(path, |text, format| format.parse::<T>(text))
}

/// The two text formats of every limpq document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Ron,
    Json,
}

impl Format {
    /// JSON when the name ends in `.json` (any case), else RON.
    pub fn of(path: &Path) -> Format {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            Format::Json
        } else {
            Format::Ron
        }
    }

    /// Parses `text` in this format.
    pub fn parse<T: DeserializeOwned>(self, text: &str) -> Result<T, String> {
        match self {
            Format::Ron => {
                limpq_solver::format::versioned::ron_from_str(text).map_err(|e| e.to_string())
            }
            Format::Json => serde_json::from_str(text).map_err(|e| e.to_string()),
        }
    }

    /// Writes `value` in this format, pretty-printed, ending in a newline.
    pub fn to_string<T: Serialize>(self, value: &T) -> Result<String, String> {
        let mut s = match self {
            Format::Ron => ron::ser::to_string_pretty(value, ron::ser::PrettyConfig::default())
                .map_err(|e| e.to_string())?,
            Format::Json => serde_json::to_string_pretty(value).map_err(|e| e.to_string())?,
        };
        s.push('\n');
        Ok(s)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Ron => "RON",
            Format::Json => "JSON",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch;

    fn entries(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_same_file_by_any_spelling() {
        let (_d_dir, d) = scratch("same");
        let a = d.join("a.ron");
        fs::write(&a, b"x").unwrap();
        let b = d.join("b.ron");
        fs::write(&b, b"x").unwrap();
        assert!(same_file(&a, &a));
        assert!(same_file(&a, &d.join(".").join("a.ron")));
        assert!(!same_file(&a, &b), "equal contents are not the same file");
        assert!(!same_file(&a, &d.join("absent.ron")));
        assert!(!same_file(&d.join("absent.ron"), &d.join("absent.ron")));
        #[cfg(unix)]
        {
            let link = d.join("hard.ron");
            fs::hard_link(&a, &link).unwrap();
            assert!(same_file(&a, &link));
            let sym = d.join("sym.ron");
            std::os::unix::fs::symlink(&a, &sym).unwrap();
            assert!(same_file(&sym, &a));
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn writes_and_replaces_a_regular_file_leaving_nothing_else() {
        let (_d_dir, d) = scratch("replace");
        let p = d.join("a.ron");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(entries(&d), ["a.ron"]);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_symlinks_fifos_devices_and_folders() {
        let (_d_dir, d) = scratch("refuse");
        let target = d.join("target");
        fs::write(&target, b"keep").unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = write_atomic(&link, b"x").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"keep");

        let fifo = d.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = write_atomic(&fifo, b"x").unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");

        let e = write_atomic(Path::new("/dev/null"), b"x").unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        assert!(!fs::metadata("/dev/null").unwrap().is_file());

        let sub = d.join("sub");
        fs::create_dir(&sub).unwrap();
        let e = write_atomic(&sub, b"x").unwrap_err();
        assert!(e.to_string().contains("folder"), "{e}");
        assert_eq!(entries(&d), ["fifo", "link", "sub", "target"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let (_d_dir, d) = scratch("failed");
        // The folder of the target is missing: said of the target, not of a temporary.
        let e = write_atomic(&d.join("missing/a.ron"), b"x").unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("missing/a.ron") && e.contains("its folder") && !e.contains(".tmp"),
            "{e}"
        );
        // A read-only folder (root ignores modes, so only checked as a user).
        let ro = d.join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
        let r = write_atomic(&ro.join("a.ron"), b"x");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let e = r.unwrap_err().to_string();
            assert!(
                e.contains("temporary file for") && e.contains("ro/a.ron"),
                "{e}"
            );
        }
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(entries(&ro).iter().all(|n| !n.ends_with(".tmp")));
        assert_eq!(entries(&d), ["ro"]);
    }

    #[test]
    fn check_writable_says_what_a_write_would_meet() {
        let (_d_dir, d) = scratch("checkable");
        check_writable(&d.join("new.ron")).unwrap();
        fs::write(d.join("old.ron"), b"x").unwrap();
        check_writable(&d.join("old.ron")).unwrap();
        let e = check_writable(&d.join("gone/new.ron"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("gone/new.ron") && e.contains("does not exist"),
            "{e}"
        );
        // A file where its folder should be (the system's words: "Not a directory").
        let e = check_writable(&d.join("old.ron/new.ron"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("old.ron/new.ron"), "{e}");
        let e = check_writable(&d).unwrap_err().to_string();
        assert!(e.contains("folder"), "{e}");
        assert!(check_writable(Path::new("/dev/null")).is_err());
        assert_eq!(entries(&d), ["old.ron"]);
    }

    /// A write removes the temporaries an earlier write of the same file left when its
    /// process died mid-write, and only those: not this process's, not a live process's,
    /// not another file's, not a name of another form.
    #[cfg(unix)]
    #[test]
    fn temporaries_of_dead_writers_are_removed_by_the_next_write() {
        let (_d_dir, d) = scratch("stale");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let me = std::process::id();
        let stale = format!(".out.ron.{dead}.0.1f.tmp");
        let kept = [
            format!(".out.ron.{me}.7.2a.tmp"),
            ".out.ron.1.0.3b.tmp".to_string(),
            format!(".other.ron.{dead}.0.1f.tmp"),
            format!(".out.ron.{dead}.x.1f.tmp"),
            "notes.txt".to_string(),
        ];
        for n in kept.iter().chain([&stale]) {
            fs::write(d.join(n), b"partial").unwrap();
        }
        write_atomic(&d.join("out.ron"), b"new").unwrap();
        let mut want: Vec<String> = kept.to_vec();
        want.push("out.ron".into());
        want.sort();
        assert_eq!(entries(&d), want);
        let _ = fs::remove_dir_all(&d);
    }

    /// A file replaced keeps its permissions: a policy made owner-only stays so.
    #[cfg(unix)]
    #[test]
    fn a_replaced_file_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let (_d_dir, d) = scratch("mode");
        let p = d.join("priv.ron");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&p, b"new").unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&p).unwrap(), b"new");
        let _ = fs::remove_dir_all(&d);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let (_d_dir, d) = scratch("private");
        let p = d.join("spec.ron");
        write_private(&p, b"x").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn concurrent_writers_use_distinct_temporaries() {
        let (_d_dir, d) = scratch("concurrent");
        let p = d.join("a.ron");
        std::thread::scope(|s| {
            for i in 0..8u8 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..20 {
                        write_atomic(p, &[i; 64]).unwrap();
                    }
                });
            }
        });
        let got = fs::read(&p).unwrap();
        assert_eq!(got.len(), 64);
        assert!(got.iter().all(|&b| b == got[0]));
        assert_eq!(entries(&d), ["a.ron"]);
    }

    #[test]
    fn bounded_reads_stop_at_the_cap() {
        let (_d_dir, d) = scratch("bounded");
        let p = d.join("big");
        fs::write(&p, vec![b'x'; 1000]).unwrap();
        assert_eq!(read_bounded(&p, 1000).unwrap().len(), 1000);
        let e = read_bounded(&p, 999).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::TooLarge { limit: 999 }),
            "{e}"
        );
        assert!(e.to_string().contains("999 bytes"), "{e}");
        #[cfg(unix)]
        {
            let e = read_bounded(Path::new("/dev/zero"), 1 << 20).unwrap_err();
            assert!(e.to_string().contains("1 MiB"), "{e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn regular_reads_refuse_a_fifo_without_blocking() {
        let (_d_dir, d) = scratch("fifo-read");
        let fifo = d.join("f.ron");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let f2 = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(
                read_regular(&f2, 100)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            );
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("read_regular blocked on a FIFO");
        assert!(r.unwrap_err().contains("FIFO"));
        let e = read_regular(Path::new("/dev/zero"), 100).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
    }

    #[test]
    fn documents_by_extension() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Doc {
            name: String,
            bits: Vec<u32>,
        }
        let (_d_dir, d) = scratch("docs");
        let doc = Doc {
            name: "x".into(),
            bits: vec![2, 4],
        };
        for name in ["d.ron", "d.json", "d.JSON"] {
            let p = d.join(name);
            write_document(&p, &doc).unwrap();
            assert_eq!(read_document::<Doc>(&p).unwrap(), doc);
        }
        assert!(fs::read_to_string(d.join("d.json"))
            .unwrap()
            .starts_with('{'));
        fs::write(d.join("bad.json"), "{\"name\": 3}").unwrap();
        let e = read_document::<Doc>(&d.join("bad.json")).unwrap_err();
        let t = e.to_string();
        assert!(t.contains("bad.json") && t.contains("JSON"), "{t}");
        fs::write(d.join("bin.ron"), [0xff, 0xfe]).unwrap();
        let e = read_document::<Doc>(&d.join("bin.ron")).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        // Nested past the RON reader's limit: refused in words for the file's author, with
        // the file and the position (the `ron` crate's own message advised its options).
        let deep = format!(
            "(name: \"x\", bits: [], extra: {}{})",
            "[".repeat(200),
            "]".repeat(200)
        );
        fs::write(d.join("deep.ron"), deep).unwrap();
        let t = read_document::<Doc>(&d.join("deep.ron"))
            .unwrap_err()
            .to_string();
        assert!(
            t.contains("deep.ron") && t.contains("nested too deeply") && t.contains("1:"),
            "{t}"
        );
        assert!(!t.contains("serde_stacker"), "{t}");
    }
}
