//! Giving back the memory of drained buffers, so an idle stream holds none.

/// A buffer or queue of a stream that drains empty is freed if its allocation is at most this
/// big: an idle connection holds no buffers (they come back on its next data). A larger one is
/// a stream moving data, kept for its next burst.
pub(crate) const RELEASE_DRAINED_MAX: usize = 64 * 1024;

/// Frees `q`'s allocation if it is empty and at most [`RELEASE_DRAINED_MAX`].
pub(crate) fn release_if_drained<T>(q: &mut alloc::collections::VecDeque<T>) {
    if q.is_empty()
        && q.capacity() != 0
        && q.capacity().saturating_mul(core::mem::size_of::<T>()) <= RELEASE_DRAINED_MAX
    {
        *q = alloc::collections::VecDeque::new();
    }
}
