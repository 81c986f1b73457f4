//! Imports the host does not implement must not stop a module from loading, as
//! a newer SDK may import more than this host knows. Each gets a stub of the
//! right signature that records the call and answers `Unimplemented` (proxy-wasm)
//! or `ENOSYS` (WASI); the test can then see which ones the filter used.

use wasmtime::{FuncType, Linker, Val, ValType};

use crate::state::VmState;
use crate::status::Status;
use crate::wasi;

pub(crate) fn link_stub(linker: &mut Linker<VmState>, module: &str, name: &str, ty: FuncType) -> wasmtime::Result<()> {
    let label = format!("{module}::{name}");
    let first_result = if module == wasi::MODULE { wasi::ENOSYS } else { Status::Unimplemented.code() };
    let result_types: Vec<ValType> = ty.results().collect();
    linker.func_new(module, name, ty, move |mut caller, _params, results| {
        caller.data_mut().unimplemented.push(label.clone());
        for (i, (slot, ty)) in results.iter_mut().zip(&result_types).enumerate() {
            *slot = match ty {
                ValType::I32 if i == 0 => Val::I32(first_result),
                ty => Val::default_for_ty(ty).unwrap_or(Val::I32(0)),
            };
        }
        Ok(())
    })?;
    Ok(())
}
