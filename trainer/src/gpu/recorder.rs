//! One command encoder, one submission: dispatches, copies, clears and readbacks in order.

use super::pipeline::Dispatch;
use super::profile;
use super::tensor::Tensor;
use super::{Gpu, GpuError};

enum Command<'a> {
    Dispatch(&'a Dispatch),
    Copy(&'a Tensor, &'a Tensor),
    Clear(&'a Tensor),
    Read(&'a Tensor),
}

/// Records dispatches, copies, clears and readbacks in order into one command encoder, and
/// submits them as one submission. Consecutive dispatches share one compute pass (wgpu
/// orders storage writes between dispatches).
///
/// ```ignore
/// let mut rec = Recorder::new(&gpu);
/// forward.record(&mut rec);
/// backward.record(&mut rec);
/// let loss = rec.read(&loss_tensor);
/// let out = rec.submit()?;          // blocks only because something was read
/// println!("{}", out.f32(loss)[0]);
/// ```
pub struct Recorder<'a> {
    gpu: &'a Gpu,
    commands: Vec<Command<'a>>,
    reads: usize,
}

/// The values read back by one [`Recorder::submit`], indexed by what [`Recorder::read`] returned.
#[derive(Debug, Default)]
pub struct Readbacks {
    words: Vec<Vec<u32>>,
}

impl Readbacks {
    /// Read number `i` as f32.
    pub fn f32(&self, i: usize) -> &[f32] {
        self.words.get(i).map_or(&[], |w| bytemuck::cast_slice(w))
    }
    /// Read number `i` as u32.
    pub fn u32(&self, i: usize) -> &[u32] {
        self.words.get(i).map_or(&[], |w| w.as_slice())
    }
    pub fn len(&self) -> usize {
        self.words.len()
    }
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

impl<'a> Recorder<'a> {
    pub fn new(gpu: &'a Gpu) -> Self {
        Recorder {
            gpu,
            commands: Vec::new(),
            reads: 0,
        }
    }

    /// Append a kernel launch.
    pub fn dispatch(&mut self, d: &'a Dispatch) {
        self.commands.push(Command::Dispatch(d));
    }

    /// Append a copy of `src` into `dst` (`min(len)` elements).
    pub fn copy(&mut self, src: &'a Tensor, dst: &'a Tensor) {
        self.commands.push(Command::Copy(src, dst));
    }

    /// Append zero-filling `t`.
    pub fn clear(&mut self, t: &'a Tensor) {
        self.commands.push(Command::Clear(t));
    }

    /// Append a readback of `t` as it is at this point; returns its index in [`Readbacks`].
    pub fn read(&mut self, t: &'a Tensor) -> usize {
        self.commands.push(Command::Read(t));
        self.reads += 1;
        self.reads - 1
    }

    /// Number of dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.commands
            .iter()
            .filter(|c| matches!(c, Command::Dispatch(_)))
            .count()
    }

    /// Encode everything, submit once, and — only if something was read — wait and map the
    /// staging buffers. Errors wgpu reported meanwhile come back as `Err`.
    pub fn submit(self) -> Result<Readbacks, GpuError> {
        self.submit_pending()?.wait()
    }

    /// Encode everything and submit once without waiting: the returned [`Pending`] waits
    /// for this submission alone (not for later ones) and maps its reads, on whichever
    /// thread calls [`Pending::wait`]. Later submissions may be recorded and submitted
    /// meanwhile; the queue runs them in order.
    pub fn submit_pending(self) -> Result<Pending<'a>, GpuError> {
        if profile::enabled() {
            return self.submit_profiled().map(Pending::Ready);
        }
        let gpu = self.gpu;
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("limpq step"),
            });
        let mut staging: Vec<(wgpu::Buffer, usize)> = Vec::new();
        let mut i = 0;
        while i < self.commands.len() {
            if let Command::Dispatch(_) = self.commands[i] {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                });
                while let Some(Command::Dispatch(d)) = self.commands.get(i) {
                    pass.set_pipeline(&d.pipeline);
                    pass.set_bind_group(0, &d.bind_group, &[]);
                    let [x, y, z] = d.workgroups;
                    pass.dispatch_workgroups(x, y, z);
                    i += 1;
                }
                continue;
            }
            Self::encode_transfer(gpu, &mut encoder, &self.commands[i], &mut staging);
            i += 1;
        }
        // The scope blames validation errors on this submission even when other threads
        // share the device; errors raised later (device lost) still reach `gpu.check()`.
        let index = gpu.scoped(|| gpu.queue.submit(Some(encoder.finish())))?;
        Ok(Pending::start(gpu, Some(index), staging))
    }

    /// Encodes a copy, clear or read (a read also queues its staging buffer in `staging`);
    /// dispatches are encoded in compute passes by the callers.
    fn encode_transfer(
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        cmd: &Command<'_>,
        staging: &mut Vec<(wgpu::Buffer, usize)>,
    ) {
        match *cmd {
            Command::Copy(src, dst) => {
                let n = src.len.min(dst.len) as u64 * 4;
                if n > 0 {
                    encoder.copy_buffer_to_buffer(&src.buffer, 0, &dst.buffer, 0, n);
                }
            }
            Command::Clear(t) => encoder.clear_buffer(&t.buffer, 0, None),
            Command::Read(t) => {
                let bytes = Tensor::padded_bytes(t.len);
                let buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback staging"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                encoder.copy_buffer_to_buffer(&t.buffer, 0, &buf, 0, bytes);
                staging.push((buf, t.len));
            }
            Command::Dispatch(_) => unreachable!("dispatches are encoded by the callers"),
        }
    }

    /// [`Recorder::submit`] while [`profile`] is on: every command is its own submission,
    /// and each dispatch is waited for and its wall time added to the profile under its
    /// kernel id and grid. Results are the same as an ordinary submit.
    fn submit_profiled(self) -> Result<Readbacks, GpuError> {
        let gpu = self.gpu;
        gpu.wait()?;
        let mut staging: Vec<(wgpu::Buffer, usize)> = Vec::new();
        for cmd in &self.commands {
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("limpq profiled command"),
                });
            match *cmd {
                Command::Dispatch(d) => {
                    {
                        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: None,
                            timestamp_writes: None,
                        });
                        pass.set_pipeline(&d.pipeline);
                        pass.set_bind_group(0, &d.bind_group, &[]);
                        let [x, y, z] = d.workgroups;
                        pass.dispatch_workgroups(x, y, z);
                    }
                    let t = std::time::Instant::now();
                    gpu.scoped(|| gpu.queue.submit(Some(encoder.finish())))?;
                    gpu.wait()?;
                    profile::add(d.id, d.workgroups, t.elapsed());
                    continue;
                }
                _ => Self::encode_transfer(gpu, &mut encoder, cmd, &mut staging),
            }
            gpu.scoped(|| gpu.queue.submit(Some(encoder.finish())))?;
        }
        Pending::start(gpu, None, staging).wait()
    }
}

/// A submitted [`Recorder`] whose reads are not mapped yet ([`Recorder::submit_pending`]).
pub enum Pending<'a> {
    /// Already complete (a profiled submission waits as it goes).
    Ready(Readbacks),
    InFlight {
        gpu: &'a Gpu,
        /// The submission to wait for; `None`: whatever was submitted last.
        index: Option<wgpu::SubmissionIndex>,
        staging: Vec<(wgpu::Buffer, usize)>,
        mapped: std::sync::mpsc::Receiver<(usize, Result<(), wgpu::BufferAsyncError>)>,
    },
}

impl<'a> Pending<'a> {
    /// Asks for every staging buffer to be mapped once the submission has run.
    fn start(
        gpu: &'a Gpu,
        index: Option<wgpu::SubmissionIndex>,
        staging: Vec<(wgpu::Buffer, usize)>,
    ) -> Pending<'a> {
        let (tx, mapped) = std::sync::mpsc::channel();
        for (k, (buf, _)) in staging.iter().enumerate() {
            let tx = tx.clone();
            buf.slice(..)
                .map_async(wgpu::MapMode::Read, move |r| drop(tx.send((k, r))));
        }
        Pending::InFlight {
            gpu,
            index,
            staging,
            mapped,
        }
    }

    /// Waits for the submission (and, through the queue's order, everything submitted
    /// before it), maps the staging buffers and copies the values out. Errors wgpu reported
    /// meanwhile come back as `Err`.
    pub fn wait(self) -> Result<Readbacks, GpuError> {
        let (gpu, index, staging, mapped) = match self {
            Pending::Ready(r) => return Ok(r),
            Pending::InFlight {
                gpu,
                index,
                staging,
                mapped,
            } => (gpu, index, staging, mapped),
        };
        let poll = || {
            gpu.device
                .poll(wgpu::PollType::Wait {
                    submission_index: index.clone(),
                    timeout: None,
                })
                .map_err(|e| GpuError::Readback(format!("device poll: {e}")))?;
            gpu.check()
        };
        if staging.is_empty() {
            // Nothing to read: no reason to wait (a later read or poll waits for it).
            return gpu.check().map(|_| Readbacks::default());
        }
        poll()?;
        // Another thread's poll may be the one running our callbacks; wait for all of them.
        let mut ok = vec![false; staging.len()];
        for _ in 0..staging.len() {
            let (k, r) = loop {
                match mapped.recv_timeout(std::time::Duration::from_millis(20)) {
                    Ok(msg) => break msg,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => poll()?,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        return Err(GpuError::Readback("map callback dropped".into()));
                    }
                }
            };
            r.map_err(|e| GpuError::Readback(e.to_string()))?;
            if let Some(slot) = ok.get_mut(k) {
                *slot = true;
            }
        }
        let mut words = Vec::with_capacity(staging.len());
        for ((buf, len), mapped) in staging.iter().zip(ok) {
            if !mapped {
                return Err(GpuError::Readback(
                    "a staging buffer was never mapped".into(),
                ));
            }
            let view = buf
                .slice(..)
                .get_mapped_range()
                .map_err(|e| GpuError::Readback(e.to_string()))?;
            // pod_collect_to_vec copies without assuming the mapping is 4-byte aligned.
            words.push(bytemuck::pod_collect_to_vec::<u8, u32>(&view[..len * 4]));
            drop(view);
            buf.unmap();
        }
        Ok(Readbacks { words })
    }
}
