//! Limits on what one client can make the server hold in memory.
//!
//! pgwire's codec already refuses, before buffering, any frontend message
//! longer than 1 GiB − 1 byte (`Query`, `Parse`, `Bind`, `CopyData`, ...) and
//! any other message (e.g. `Execute`, `Sync`, `Describe`) longer than 10,000
//! bytes; it closes the connection on such a message, and the limit is not
//! configurable in pgwire 0.42. On top of that Quiver enforces:
//!
//! - [`MAX_MESSAGE_BYTES`] on a query string (Query, Parse) and on the total
//!   size of one Bind's parameter values: error 54000, connection kept;
//! - [`MAX_COPY_BYTES`] on the data a `COPY ... FROM STDIN` buffers without a
//!   complete record (a COPY itself is loaded piece by piece, of any size):
//!   once exceeded, the data is dropped and CopyDone answers error 54000.

/// Largest query string or total Bind parameter size accepted (256 MiB).
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Largest COPY record (data buffered without a record boundary, 1 GiB).
pub(crate) const MAX_COPY_BYTES: usize = 1024 * 1024 * 1024;
