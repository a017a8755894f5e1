//! Answers that can be large (a history page, a chat list) go out in
//! pieces of JSON, each rendered when the connection is ready for more: a
//! slow reader holds the rows the answer is made of, not their rendering.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;

/// About how much JSON one piece holds.
pub const PIECE_BYTES: usize = 64 * 1024;

/// A 200 answer of JSON `pieces`, sent with `Transfer-Encoding: chunked`.
pub fn answer(pieces: impl Iterator<Item = Bytes> + Send + 'static) -> Response {
    let body = Body::from_stream(stream::iter(pieces.map(Ok::<_, Infallible>)));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
