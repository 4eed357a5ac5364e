//! A blocking client of the daemon's socket.
//!
//! On platforms without Unix-domain sockets (Windows) [`Client::connect`] refuses with
//! [`Error::Unsupported`]: no `Client` can exist there.

#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::Error;
use super::protocol::{
    read_message, write_message, JobId, JobInfo, Request, Response, MAX_FRAME, MAX_PAGE,
};

pub struct Client {
    stream: UnixStream,
    socket: PathBuf,
}

/// Where no Unix-domain sockets exist a client has no stream: this type has no values, so
/// every method of a `Client` there is unreachable, and `connect` is the only way in.
#[cfg(not(unix))]
enum UnixStream {}

#[cfg(not(unix))]
impl UnixStream {
    fn set_read_timeout(&self, _: Option<Duration>) -> std::io::Result<()> {
        match *self {}
    }
}

#[cfg(not(unix))]
impl std::io::Read for UnixStream {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        match *self {}
    }
}

#[cfg(not(unix))]
impl std::io::Write for UnixStream {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        match *self {}
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match *self {}
    }
}

fn unexpected<T>(r: Response) -> Result<T, Error> {
    Err(Error::UnexpectedReply(format!("{r:?}")))
}

impl Client {
    /// Connect to a daemon's socket; the error says how to start one when none answers.
    #[cfg(unix)]
    pub fn connect(socket: &Path) -> Result<Client, Error> {
        match UnixStream::connect(socket) {
            Ok(stream) => Ok(Client {
                stream,
                socket: socket.to_path_buf(),
            }),
            Err(source) => Err(Error::NotRunning {
                socket: socket.to_path_buf(),
                source,
            }),
        }
    }

    /// The daemon needs Unix-domain sockets (docs/DAEMON.md, Platforms).
    #[cfg(not(unix))]
    pub fn connect(_socket: &Path) -> Result<Client, Error> {
        Err(Error::Unsupported)
    }

    /// Give up on a reply after `d` (none by default).
    pub fn set_timeout(&self, d: Option<Duration>) -> Result<(), Error> {
        self.stream
            .set_read_timeout(d)
            .map_err(|e| Error::io("cannot set a timeout on", &self.socket, e))
    }

    pub fn send(&mut self, req: &Request) -> Result<(), Error> {
        Ok(write_message(&mut self.stream, req, MAX_FRAME)?)
    }

    pub fn recv(&mut self) -> Result<Response, Error> {
        Ok(read_message(&mut self.stream, MAX_FRAME)?)
    }

    /// One request, one reply; an `Error` reply becomes [`Error::Daemon`].
    pub fn request(&mut self, req: &Request) -> Result<Response, Error> {
        self.send(req)?;
        match self.recv()? {
            Response::Error(e) => Err(Error::Daemon(e)),
            r => Ok(r),
        }
    }

    pub fn submit(&mut self, spec: super::job::JobSpec) -> Result<JobId, Error> {
        match self.request(&Request::Submit(Box::new(spec)))? {
            Response::Submitted(id) => Ok(id),
            r => unexpected(r),
        }
    }

    pub fn status(&mut self, id: JobId) -> Result<JobInfo, Error> {
        match self.request(&Request::Status(id))? {
            Response::Job(i) => Ok(i),
            r => unexpected(r),
        }
    }

    /// Every job, fetched page by page (each page one frame, however many jobs there are).
    pub fn list(&mut self) -> Result<Vec<JobInfo>, Error> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let req = Request::ListPage {
                after,
                limit: MAX_PAGE,
            };
            match self.request(&req)? {
                Response::Page { jobs, more } => {
                    let last = jobs.last().map(|j| j.id);
                    all.extend(jobs);
                    match last {
                        Some(id) if more && id > after => after = id,
                        _ => return Ok(all),
                    }
                }
                r => return unexpected(r),
            }
        }
    }

    /// Remove a done, failed or cancelled job (and its folder).
    pub fn remove(&mut self, id: JobId) -> Result<(), Error> {
        match self.request(&Request::Remove(id))? {
            Response::Ok => Ok(()),
            r => unexpected(r),
        }
    }

    /// Remove every done, failed and cancelled job; returns how many went.
    pub fn prune(&mut self) -> Result<u64, Error> {
        match self.request(&Request::Prune)? {
            Response::Removed(n) => Ok(n),
            r => unexpected(r),
        }
    }

    /// Watch a job: `on` sees every streamed response; returns the final `JobInfo`.
    pub fn watch(&mut self, id: JobId, mut on: impl FnMut(&Response)) -> Result<JobInfo, Error> {
        self.send(&Request::Watch(id))?;
        loop {
            let r = self.recv()?;
            on(&r);
            match r {
                Response::Finished(info) => return Ok(info),
                Response::Error(e) => return Err(Error::Daemon(e)),
                _ => {}
            }
        }
    }
}
