//! What every verbs object shares: the one conversion from the pointer
//! libibverbs hands back to our object (container_of), fallible allocation,
//! and the one destroy-then-free path.
//!
//! Each object is `#[repr(C)]` with libibverbs' struct first, wrapped in an
//! `UnsafeCell`: libibverbs and the kernel helpers write into it (QP state,
//! CQ counters, the extended CQ's status) while we hold `&Self`, so every
//! pointer we give them must come from `UnsafeCell::get`.

use crate::cmd::{Errno, Result};
use core::mem::MaybeUninit;

/// A provider object that libibverbs sees as a pointer to `Raw`.
///
/// # Safety
/// `Self::Raw` must sit `RAW_OFFSET` bytes into `Self`, and every `Raw` that
/// libibverbs passes back to [`Object::from_raw`] must be one we handed out.
pub(crate) unsafe trait Object: Sized {
    type Raw;
    /// Where the `Raw` struct lives inside `Self`.
    const RAW_OFFSET: usize = 0;

    /// The pointer libibverbs knows this object by; writable (it comes from an `UnsafeCell`).
    fn raw(&self) -> *mut Self::Raw;

    /// Our object behind a pointer libibverbs passes back.
    ///
    /// # Safety
    /// `raw` must be the `Raw` of a live `Self` that outlives `'a`.
    unsafe fn from_raw<'a>(raw: *mut Self::Raw) -> &'a Self {
        // SAFETY: per the contract, `raw` sits RAW_OFFSET bytes into a live Self.
        unsafe { &*raw.cast::<u8>().sub(Self::RAW_OFFSET).cast::<Self>() }
    }
}

/// An object we allocate with `Box` and free once the kernel let it go.
///
/// # Safety
/// As for [`Object`], with `RAW_OFFSET == 0`, and every handed-out `Raw` must
/// come from [`Boxed::leak`].
pub(crate) unsafe trait Boxed: Object {
    /// Hands the object to libibverbs; [`destroy`] takes it back.
    fn leak(self: Box<Self>) -> *mut Self::Raw {
        const { assert!(Self::RAW_OFFSET == 0) };
        Box::leak(self).raw()
    }
}

/// Implements [`Object`] and [`Boxed`] for a `#[repr(C)]` type whose first
/// field `$cell` is an `UnsafeCell` of the struct libibverbs knows it by
/// (which begins with `$raw`).
macro_rules! boxed_object {
    ($ty:ty, $raw:ty, $cell:ident) => {
        // SAFETY: `$cell` is the first field of a repr(C) struct and begins
        // with `$raw`; the type is handed out only by Boxed::leak.
        unsafe impl $crate::object::Object for $ty {
            type Raw = $raw;
            fn raw(&self) -> *mut $raw {
                self.$cell.get().cast()
            }
        }
        // SAFETY: as above.
        unsafe impl $crate::object::Boxed for $ty {}
    };
}
pub(crate) use boxed_object;

/// Destroys `raw`'s kernel object with `kernel_destroy`, then frees ours. When
/// the kernel refuses, the object stays alive and usable, as verbs requires.
///
/// # Safety
/// `raw` must come from [`Boxed::leak`] for `T`, and on success nobody may
/// use it again (libibverbs' destroy contract).
pub(crate) unsafe fn destroy<T: Boxed>(raw: *mut T::Raw, kernel_destroy: impl FnOnce(&T) -> Result<()>) -> Result<()> {
    // SAFETY: per the contract, raw is a live T.
    kernel_destroy(unsafe { T::from_raw(raw) })?;
    // SAFETY: leaked from a Box<T> at offset 0; no other reference remains.
    drop(unsafe { Box::from_raw(raw.cast::<T>()) });
    Ok(())
}

/// `Box::new` that reports ENOMEM instead of aborting the application.
pub(crate) fn try_box<T>(value: T) -> Result<Box<T>> {
    let mut slot = try_box_uninit::<T>()?;
    slot.write(value);
    // SAFETY: initialized just above; MaybeUninit<T> has T's layout.
    Ok(unsafe { Box::from_raw(Box::into_raw(slot).cast::<T>()) })
}

/// An uninitialized heap slot for objects built in place, or ENOMEM.
pub(crate) fn try_box_uninit<T>() -> Result<Box<MaybeUninit<T>>> {
    let layout = core::alloc::Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::new(MaybeUninit::uninit()));
    }
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { std::alloc::alloc(layout) };
    if p.is_null() {
        return Err(Errno(libc::ENOMEM));
    }
    // SAFETY: allocated by the global allocator with MaybeUninit<T>'s layout,
    // which is what Box frees it with.
    Ok(unsafe { Box::from_raw(p.cast::<MaybeUninit<T>>()) })
}

/// Zero bytes are a valid value of `T` (plain C structs of integers and
/// nullable pointers).
///
/// # Safety
/// The all-zero bit pattern must be a valid `T`.
pub(crate) unsafe fn try_box_zeroed<T>() -> Result<Box<T>> {
    let mut slot = try_box_uninit::<T>()?;
    // SAFETY: writing zeroes inside our own allocation.
    unsafe { core::ptr::write_bytes(slot.as_mut_ptr(), 0, 1) };
    // SAFETY: all-zero is a valid T per the contract.
    Ok(unsafe { Box::from_raw(Box::into_raw(slot).cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::UnsafeCell;

    #[repr(C)]
    struct Thing {
        raw: UnsafeCell<u64>,
        extra: u32,
    }
    // SAFETY: raw is the first field of a repr(C) struct.
    unsafe impl Object for Thing {
        type Raw = u64;
        fn raw(&self) -> *mut u64 {
            self.raw.get()
        }
    }
    // SAFETY: handed out only through leak().
    unsafe impl Boxed for Thing {}

    #[test]
    fn leak_then_destroy_frees_only_on_success() {
        let raw = try_box(Thing { raw: UnsafeCell::new(7), extra: 9 }).unwrap().leak();
        // SAFETY: raw came from leak just above.
        assert_eq!(unsafe { Thing::from_raw(raw) }.extra, 9);
        // SAFETY: as above; the refusal keeps it alive.
        let refused = unsafe { destroy::<Thing>(raw, |_| Err(Errno(libc::EBUSY))) };
        assert_eq!(refused, Err(Errno(libc::EBUSY)));
        // SAFETY: still alive after the refusal.
        assert_eq!(unsafe { *raw }, 7);
        // SAFETY: now freed; raw is not used afterwards.
        assert_eq!(unsafe { destroy::<Thing>(raw, |t| if t.extra == 9 { Ok(()) } else { Err(Errno(libc::EIO)) }) }, Ok(()));
    }

    #[test]
    fn zeroed_boxes() {
        // SAFETY: all-zero is a valid [u64; 4].
        let b = unsafe { try_box_zeroed::<[u64; 4]>() }.unwrap();
        assert_eq!(*b, [0; 4]);
    }
}
