//! The two macros every exported function is built from: [`ffi_boundary!`],
//! which keeps panics from unwinding into C, and [`ptr_arg!`], which turns a
//! raw pointer argument into a reference, a box, a string or an out-param
//! after checking it for NULL.
//!
//! Both return early with a value chosen by the function's return type:
//! [`OnPanic`] and [`OnNull`] give `FACTORY_ERR_PANIC` and
//! `FACTORY_ERR_NULL_POINTER` for functions returning a status, and a
//! neutral value (NULL, 0, nothing) for the others.

use std::ffi::CStr;
use std::os::raw::c_char;
use std::ptr::{self, NonNull};

use super::status::factory_status;

/// What an exported function returns when its body panicked.
pub(crate) trait OnPanic {
    fn on_panic() -> Self;
}

/// What an exported function returns when a pointer argument is NULL.
pub(crate) trait OnNull {
    fn on_null() -> Self;
}

impl OnPanic for factory_status {
    fn on_panic() -> Self {
        factory_status::ERR_PANIC
    }
}

impl OnNull for factory_status {
    fn on_null() -> Self {
        factory_status::ERR_NULL_POINTER
    }
}

/// Functions returning nothing, a port or a pointer report both failures
/// the only way their type allows.
macro_rules! neutral_value {
    ($($ty:ty => $value:expr),* $(,)?) => {$(
        impl OnPanic for $ty {
            fn on_panic() -> Self {
                $value
            }
        }
        impl OnNull for $ty {
            fn on_null() -> Self {
                $value
            }
        }
    )*};
}

neutral_value!(u8 => 0, u16 => 0, usize => 0, *const c_char => ptr::null());
impl OnPanic for () {
    fn on_panic() -> Self {}
}
impl OnNull for () {
    fn on_null() -> Self {}
}

impl<T> OnPanic for *mut T {
    fn on_panic() -> Self {
        ptr::null_mut()
    }
}

impl<T> OnNull for *mut T {
    fn on_null() -> Self {
        ptr::null_mut()
    }
}

/// Runs an exported function's body, turning a panic into the return type's
/// [`OnPanic`] value. `return` inside the body returns from the function.
///
/// `AssertUnwindSafe` is sound here because after a panic the only thing C
/// may still do with the handle involved is free it (the header says so),
/// and freeing needs no invariant the panic could have broken.
macro_rules! ffi_boundary {
    ($($body:tt)*) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| {
            $($body)*
        })) {
            Ok(value) => value,
            Err(_) => $crate::ffi::boundary::OnPanic::on_panic(),
        }
    };
}

/// Checks a pointer argument for NULL (returning the function's [`OnNull`]
/// value) and converts it:
/// - `ref p`: `&T` from `*const T`;
/// - `mut p`: `&mut T` from `*mut T`;
/// - `owned p`: `Box<T>` from a `*mut T` that `Box::into_raw` made;
/// - `cstr p`: `&CStr` from a NUL-terminated `*const c_char`;
/// - `out p`: an [`Out`] that writes a `T` through `*mut T` later.
///
/// The `unsafe` rests on the contract every function documents in the
/// header: a non-NULL pointer is valid for its use and, for handles, was
/// made by this library and not yet freed.
macro_rules! ptr_arg {
    (ref $p:ident) => {{
        // SAFETY: non-NULL pointers passed as `const T *` point to a live T
        // (documented contract); `as_ref` handles NULL.
        match unsafe { $p.as_ref() } {
            Some(r) => r,
            None => return $crate::ffi::boundary::OnNull::on_null(),
        }
    }};
    (mut $p:ident) => {{
        // SAFETY: non-NULL handles point to a live T that no other thread
        // uses during this call (documented contract); `as_mut` handles NULL.
        match unsafe { $p.as_mut() } {
            Some(r) => r,
            None => return $crate::ffi::boundary::OnNull::on_null(),
        }
    }};
    (owned $p:ident) => {{
        if $p.is_null() {
            return $crate::ffi::boundary::OnNull::on_null();
        }
        // SAFETY: the handle came from `Box::into_raw` in this module, and
        // C gives it back exactly once, to the one function that frees it.
        unsafe { Box::from_raw($p) }
    }};
    (cstr $p:ident) => {{
        if $p.is_null() {
            return $crate::ffi::boundary::OnNull::on_null();
        }
        // SAFETY: non-NULL string arguments are NUL-terminated and live for
        // the call (documented contract); the text is copied before return.
        unsafe { ::std::ffi::CStr::from_ptr($p) }
    }};
    (out $p:ident) => {{
        match ::std::ptr::NonNull::new($p) {
            // SAFETY: non-NULL out-params are valid for writing one T
            // (documented contract).
            Some(p) => unsafe { $crate::ffi::boundary::Out::new(p) },
            None => return $crate::ffi::boundary::OnNull::on_null(),
        }
    }};
}

/// A checked out-param: written at most once, on success only.
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// # Safety
    /// `p` must be valid for writing one `T` for as long as the `Out` lives.
    pub(crate) unsafe fn new(p: NonNull<T>) -> Self {
        Out(p)
    }

    /// Stores `value` without reading or dropping what was there (C memory
    /// may be uninitialised).
    pub(crate) fn write(self, value: T) {
        // SAFETY: `new`'s caller promised the pointer is valid for a write.
        unsafe { self.0.as_ptr().write(value) }
    }
}

/// Copies a C string argument into an owned `String`.
///
/// # Errors
/// `FACTORY_ERR_INVALID_ARGUMENT` when it is empty or not UTF-8.
pub(crate) fn owned_text(s: &CStr) -> Result<String, factory_status> {
    match s.to_str() {
        Ok(text) if !text.is_empty() => Ok(text.to_owned()),
        _ => Err(factory_status::ERR_INVALID_ARGUMENT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics() -> factory_status {
        ffi_boundary! {
            panic!("a bug");
        }
    }

    fn port_of(p: *const u16) -> u16 {
        ffi_boundary! {
            *ptr_arg!(ref p)
        }
    }

    fn store(out: *mut i32) -> factory_status {
        ffi_boundary! {
            ptr_arg!(out out).write(5);
            factory_status::OK
        }
    }

    #[test]
    fn a_panic_becomes_err_panic() {
        assert_eq!(panics(), factory_status::ERR_PANIC);
    }

    #[test]
    fn null_gives_the_neutral_value_or_err_null_pointer() {
        assert_eq!(port_of(ptr::null()), 0);
        assert_eq!(port_of(&7), 7);
        assert_eq!(store(ptr::null_mut()), factory_status::ERR_NULL_POINTER);
        let mut v = 0;
        assert_eq!(store(&mut v), factory_status::OK);
        assert_eq!(v, 5);
    }

    #[test]
    fn strings_must_be_non_empty_utf8() {
        assert_eq!(owned_text(c"host").as_deref(), Ok("host"));
        assert_eq!(owned_text(c""), Err(factory_status::ERR_INVALID_ARGUMENT));
        let bad = c"\xff";
        assert_eq!(owned_text(bad), Err(factory_status::ERR_INVALID_ARGUMENT));
    }
}
