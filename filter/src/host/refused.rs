//! What a host call that did not succeed says: which call, and the status.

use std::fmt;

/// A host call answered with a status other than `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The ABI function that was called.
    pub call: &'static str,
    /// The status it returned (the ABI's numbering: 1 not found, 2 bad
    /// argument, 10 internal failure...).
    pub status: u32,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} returned status {}", self.call, self.status)
    }
}

pub(super) const OK: u32 = 0;
pub(super) const NOT_FOUND: u32 = 1;

/// `Ok(())` for status 0, the refusal otherwise.
pub(super) fn check(call: &'static str, status: u32) -> Result<(), Refused> {
    if status == OK {
        Ok(())
    } else {
        Err(Refused { call, status })
    }
}

/// Takes ownership of a buffer the host allocated through the module's
/// allocator (`proxy_on_memory_allocate`); `None` if it handed none.
///
/// # Safety
/// `data` is null or was allocated by the host for us with `size` bytes.
pub(super) unsafe fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    // SAFETY: the caller's contract.
    (!data.is_null()).then(|| unsafe { Vec::from_raw_parts(data, size, size) })
}
