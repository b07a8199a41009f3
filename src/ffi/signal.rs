//! SIGPIPE at the C boundary.
//!
//! A Rust program starts with SIGPIPE ignored, but a C program linking
//! libfactory does not, and its default action kills the process when a
//! socket write finds the peer gone (a stopped server, a dropped backup).
//! The standard library already passes `MSG_NOSIGNAL` on Linux; this covers
//! every other path and platform. Each `factory_server_start` and
//! `factory_client_connect` sets SIGPIPE to `SIG_IGN` if, and only if, it
//! is `SIG_DFL` at that moment, so a handler the program installed is left
//! alone. Checking on every call rather than once costs two system calls
//! per connection and still protects a program that reset the default.

/// Ignores SIGPIPE unless the program chose a disposition for it.
pub(crate) fn ignore_default_sigpipe() {
    #[cfg(unix)]
    ignore_if_default();
}

#[cfg(unix)]
fn ignore_if_default() {
    // SAFETY: an all-zero `sigaction` is a valid value (empty mask, no
    // flags, SIG_DFL); the calls below only read into or from it.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a NULL new action makes `sigaction` only report the current
    // one into `current`, which is valid for writing.
    if unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut current) } != 0 {
        return;
    }
    if current.sa_sigaction != libc::SIG_DFL {
        return;
    }
    // SAFETY: as above; the new action is SIG_IGN with an empty mask.
    let mut ignore: libc::sigaction = unsafe { std::mem::zeroed() };
    ignore.sa_sigaction = libc::SIG_IGN;
    // SAFETY: `sa_mask` is a valid, writable signal set.
    unsafe { libc::sigemptyset(&mut ignore.sa_mask) };
    // SAFETY: `ignore` is a fully initialised action; NULL discards the old.
    unsafe { libc::sigaction(libc::SIGPIPE, &ignore, std::ptr::null_mut()) };
}
