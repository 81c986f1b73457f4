//! Just enough WASI preview 1 (`wasi_snapshot_preview1`) for a Rust
//! `wasm32-wasip1` cdylib: what its standard library imports for start-up,
//! `HashMap` seeds, the clock and stdout/stderr. Like proxy-wasm-cpp-host: no
//! arguments, no environment, no files; stdout lines are logged at info and stderr
//! lines (where Rust prints a panic) at error. Clocks read the host's test clock;
//! random bytes are deterministic per VM. Anything else a module imports from WASI
//! gets a stub answering `ENOSYS` (see `stubs.rs`).

use wasmtime::{Caller, Linker};

use crate::logs::{LogRecord, LogSource};
use crate::memory::{read, write, write_u32, write_u64};
use crate::state::VmState;
use crate::status::LogLevel;

pub(crate) const MODULE: &str = "wasi_snapshot_preview1";

const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
pub(crate) const ENOSYS: i32 = 52;

type C<'a> = Caller<'a, VmState>;

pub(crate) fn link(linker: &mut Linker<VmState>) -> wasmtime::Result<Vec<&'static str>> {
    let mut names = Vec::new();
    macro_rules! wasi {
        ($name:literal, $f:expr) => {
            linker.func_wrap(MODULE, $name, $f)?;
            names.push($name);
        };
    }
    wasi!("fd_write", fd_write);
    wasi!("fd_read", |_: C<'_>, _: i32, _: i32, _: i32, _: i32| EBADF);
    wasi!("fd_close", |_: C<'_>, _: i32| EBADF);
    wasi!("fd_seek", |_: C<'_>, _: i32, _: i64, _: i32, _: i32| EBADF);
    wasi!("fd_fdstat_get", fd_fdstat_get);
    wasi!("fd_prestat_get", |_: C<'_>, _: i32, _: i32| EBADF);
    wasi!("fd_prestat_dir_name", |_: C<'_>, _: i32, _: i32, _: i32| EBADF);
    wasi!("environ_sizes_get", sizes_get);
    wasi!("environ_get", |_: C<'_>, _: i32, _: i32| ESUCCESS);
    wasi!("args_sizes_get", sizes_get);
    wasi!("args_get", |_: C<'_>, _: i32, _: i32| ESUCCESS);
    wasi!("clock_time_get", clock_time_get);
    wasi!("clock_res_get", clock_res_get);
    wasi!("random_get", random_get);
    wasi!("sched_yield", |_: C<'_>| ESUCCESS);
    wasi!("poll_oneoff", |_: C<'_>, _: i32, _: i32, _: i32, _: i32| ENOSYS);
    wasi!("proc_exit", proc_exit);
    Ok(names)
}

fn errno(result: Result<(), crate::status::Status>) -> i32 {
    if result.is_ok() {
        ESUCCESS
    } else {
        EFAULT
    }
}

fn sizes_get(mut c: C<'_>, count_ptr: i32, size_ptr: i32) -> i32 {
    errno(write_u32(&mut c, count_ptr, 0).and_then(|()| write_u32(&mut c, size_ptr, 0)))
}

fn fd_fdstat_get(mut c: C<'_>, fd: i32, ptr: i32) -> i32 {
    if !(0..=2).contains(&fd) {
        return EBADF;
    }
    // fdstat: filetype u8 (2 = character device), flags u16, rights_base u64,
    // rights_inheriting u64; 24 bytes with padding.
    let mut stat = [0u8; 24];
    stat[0] = 2;
    stat[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    errno(write(&mut c, ptr, &stat))
}

fn fd_write(mut c: C<'_>, fd: i32, iovs: i32, iovs_len: i32, written_ptr: i32) -> i32 {
    if fd != 1 && fd != 2 {
        return EBADF;
    }
    let mut data = Vec::new();
    for i in 0..iovs_len.max(0) {
        let Ok(iov) = read(&mut c, iovs.wrapping_add(i * 8), 8) else {
            return EFAULT;
        };
        let word = |at: usize| {
            let mut le = [0u8; 4];
            le.copy_from_slice(iov.get(at..at + 4).unwrap_or(&[0; 4]));
            i32::from_le_bytes(le)
        };
        match read(&mut c, word(0), word(4)) {
            Ok(bytes) => data.extend_from_slice(&bytes),
            Err(_) => return EFAULT,
        }
    }
    let written = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let state = c.data_mut();
    let buffer = if fd == 1 { &mut state.stdout } else { &mut state.stderr };
    buffer.extend_from_slice(&data);
    flush_lines(state, false);
    errno(write_u32(&mut c, written_ptr, written))
}

/// Logs complete lines written to stdout/stderr; with `all`, also the rest.
pub(crate) fn flush_lines(state: &mut VmState, all: bool) {
    for fd in [1, 2] {
        let (buffer, level, source) = if fd == 1 {
            (&mut state.stdout, LogLevel::Info, LogSource::Stdout)
        } else {
            (&mut state.stderr, LogLevel::Error, LogSource::Stderr)
        };
        let mut lines = Vec::new();
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            lines.push(line);
        }
        if all && !buffer.is_empty() {
            lines.push(std::mem::take(buffer));
        }
        for line in lines {
            let text = String::from_utf8_lossy(&line).trim_end_matches('\n').to_string();
            state.host.logs.push(LogRecord {
                vm: state.vm,
                context_id: state.context_id(),
                level,
                message: text,
                source,
            });
        }
    }
}

fn clock_time_get(mut c: C<'_>, clock_id: i32, _precision: i64, ptr: i32) -> i32 {
    if !(0..=3).contains(&clock_id) {
        return EINVAL;
    }
    let now = c.data().host.clock.now_nanos();
    errno(write_u64(&mut c, ptr, now))
}

fn clock_res_get(mut c: C<'_>, _clock_id: i32, ptr: i32) -> i32 {
    errno(write_u64(&mut c, ptr, 1))
}

fn random_get(mut c: C<'_>, ptr: i32, len: i32) -> i32 {
    let len = len.max(0) as usize;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        let word = c.data_mut().next_random();
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    bytes.truncate(len);
    errno(write(&mut c, ptr, &bytes))
}

fn proc_exit(mut c: C<'_>, code: i32) -> wasmtime::Result<()> {
    flush_lines(c.data_mut(), true);
    Err(wasmtime::Error::msg(format!("guest called proc_exit({code})")))
}
