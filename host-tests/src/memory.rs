//! Reading and writing the guest's linear memory from a hostcall, and handing data
//! to the guest in memory it allocated itself (`proxy_on_memory_allocate` or
//! `malloc`), which the SDK then owns and frees.

use wasmtime::Caller;

use crate::state::VmState;
use crate::status::Status;

/// Why a hostcall stopped: a status for the guest, or a trap that must unwind it
/// (the guest's allocator trapped).
pub(crate) enum Fail {
    Status(Status),
    Trap(wasmtime::Error),
}

impl From<Status> for Fail {
    fn from(status: Status) -> Self {
        Fail::Status(status)
    }
}

impl From<wasmtime::Error> for Fail {
    fn from(error: wasmtime::Error) -> Self {
        Fail::Trap(error)
    }
}

/// Turns a hostcall body's outcome into what the guest receives.
pub(crate) fn finish(result: Result<(), Fail>) -> wasmtime::Result<i32> {
    match result {
        Ok(()) => Ok(Status::Ok.code()),
        Err(Fail::Status(status)) => Ok(status.code()),
        Err(Fail::Trap(error)) => Err(error),
    }
}

fn range(ptr: i32, len: i32) -> Result<std::ops::Range<usize>, Status> {
    let start = ptr as u32 as usize;
    let len = len as u32 as usize;
    let end = start.checked_add(len).ok_or(Status::InvalidMemoryAccess)?;
    Ok(start..end)
}

pub(crate) fn read(caller: &mut Caller<'_, VmState>, ptr: i32, len: i32) -> Result<Vec<u8>, Status> {
    let memory = caller.data().memory.ok_or(Status::InvalidMemoryAccess)?;
    let range = range(ptr, len)?;
    if range.is_empty() {
        return Ok(Vec::new());
    }
    memory.data(&caller).get(range).map(<[u8]>::to_vec).ok_or(Status::InvalidMemoryAccess)
}

pub(crate) fn read_string(caller: &mut Caller<'_, VmState>, ptr: i32, len: i32) -> Result<String, Status> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

pub(crate) fn write(caller: &mut Caller<'_, VmState>, ptr: i32, bytes: &[u8]) -> Result<(), Status> {
    let memory = caller.data().memory.ok_or(Status::InvalidMemoryAccess)?;
    let len = i32::try_from(bytes.len()).map_err(|_| Status::InvalidMemoryAccess)?;
    let range = range(ptr, len)?;
    memory.data_mut(caller).get_mut(range).ok_or(Status::InvalidMemoryAccess)?.copy_from_slice(bytes);
    Ok(())
}

pub(crate) fn write_u32(caller: &mut Caller<'_, VmState>, ptr: i32, value: u32) -> Result<(), Status> {
    write(caller, ptr, &value.to_le_bytes())
}

pub(crate) fn write_u64(caller: &mut Caller<'_, VmState>, ptr: i32, value: u64) -> Result<(), Status> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Copies `bytes` into a fresh guest allocation and stores its address and size at
/// `ptr_ptr` / `size_ptr`. Empty data is passed as a null pointer and size 0,
/// like proxy-wasm-cpp-host's `copyToPointerSize`.
pub(crate) fn copy_out(
    caller: &mut Caller<'_, VmState>,
    bytes: &[u8],
    ptr_ptr: i32,
    size_ptr: i32,
) -> Result<(), Fail> {
    copy_out_with(caller, bytes, ptr_ptr, size_ptr, false)
}

/// Like [`copy_out`], but allocates even when empty (for maps, which
/// proxy-wasm-cpp-host always allocates).
pub(crate) fn copy_out_always(
    caller: &mut Caller<'_, VmState>,
    bytes: &[u8],
    ptr_ptr: i32,
    size_ptr: i32,
) -> Result<(), Fail> {
    copy_out_with(caller, bytes, ptr_ptr, size_ptr, true)
}

fn copy_out_with(
    caller: &mut Caller<'_, VmState>,
    bytes: &[u8],
    ptr_ptr: i32,
    size_ptr: i32,
    allocate_empty: bool,
) -> Result<(), Fail> {
    let size = u32::try_from(bytes.len()).map_err(|_| Status::InvalidMemoryAccess)?;
    let mut address = 0u32;
    if size > 0 || allocate_empty {
        address = allocate(caller, size.max(1))?;
        write(caller, address as i32, bytes)?;
    }
    write_u32(caller, ptr_ptr, address)?;
    write_u32(caller, size_ptr, size)?;
    Ok(())
}

fn allocate(caller: &mut Caller<'_, VmState>, size: u32) -> Result<u32, Fail> {
    let alloc = caller.data().alloc.clone().ok_or(Status::InvalidMemoryAccess)?;
    let address = alloc.call(&mut *caller, size as i32)? as u32;
    if address == 0 {
        return Err(Status::InvalidMemoryAccess.into());
    }
    Ok(address)
}
