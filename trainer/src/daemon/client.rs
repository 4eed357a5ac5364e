//! A blocking client of the daemon's socket.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{
    read_message, write_message, FrameError, JobId, JobInfo, Request, Response, MAX_FRAME, MAX_PAGE,
};

pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connect to a daemon's socket; the error says how to start one when none answers.
    pub fn connect(socket: &Path) -> Result<Client, String> {
        match UnixStream::connect(socket) {
            Ok(stream) => Ok(Client { stream }),
            Err(e) => Err(format!(
                "no limpq daemon answers on {} ({e}); start one with `limpq serve` \
                 (or pass the same --socket / --state as the daemon)",
                socket.display()
            )),
        }
    }

    /// Give up on a reply after `d` (none by default).
    pub fn set_timeout(&self, d: Option<Duration>) -> Result<(), String> {
        self.stream.set_read_timeout(d).map_err(|e| e.to_string())
    }

    pub fn send(&mut self, req: &Request) -> Result<(), String> {
        write_message(&mut self.stream, req, MAX_FRAME).map_err(|e| e.to_string())
    }

    pub fn recv(&mut self) -> Result<Response, String> {
        read_message(&mut self.stream, MAX_FRAME).map_err(|e| match e {
            FrameError::Closed => "the daemon closed the connection".to_string(),
            e => e.to_string(),
        })
    }

    /// One request, one reply; an `Error` reply becomes `Err`.
    pub fn request(&mut self, req: &Request) -> Result<Response, String> {
        self.send(req)?;
        match self.recv()? {
            Response::Error(e) => Err(e),
            r => Ok(r),
        }
    }

    pub fn submit(&mut self, spec: super::job::JobSpec) -> Result<JobId, String> {
        match self.request(&Request::Submit(Box::new(spec)))? {
            Response::Submitted(id) => Ok(id),
            r => Err(format!("unexpected reply {r:?}")),
        }
    }

    pub fn status(&mut self, id: JobId) -> Result<JobInfo, String> {
        match self.request(&Request::Status(id))? {
            Response::Job(i) => Ok(i),
            r => Err(format!("unexpected reply {r:?}")),
        }
    }

    /// Every job, fetched page by page (each page one frame, however many jobs there are).
    pub fn list(&mut self) -> Result<Vec<JobInfo>, String> {
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
                r => return Err(format!("unexpected reply {r:?}")),
            }
        }
    }

    /// Remove a done, failed or cancelled job (and its folder).
    pub fn remove(&mut self, id: JobId) -> Result<(), String> {
        match self.request(&Request::Remove(id))? {
            Response::Ok => Ok(()),
            r => Err(format!("unexpected reply {r:?}")),
        }
    }

    /// Remove every done, failed and cancelled job; returns how many went.
    pub fn prune(&mut self) -> Result<u64, String> {
        match self.request(&Request::Prune)? {
            Response::Removed(n) => Ok(n),
            r => Err(format!("unexpected reply {r:?}")),
        }
    }

    /// Watch a job: `on` sees every streamed response; returns the final `JobInfo`.
    pub fn watch(&mut self, id: JobId, mut on: impl FnMut(&Response)) -> Result<JobInfo, String> {
        self.send(&Request::Watch(id))?;
        loop {
            let r = self.recv()?;
            on(&r);
            match r {
                Response::Finished(info) => return Ok(info),
                Response::Error(e) => return Err(e),
                _ => {}
            }
        }
    }
}
