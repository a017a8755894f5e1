//! Answers that can be large (a history page, a chat list) go out in
//! pieces of JSON, each rendered when the connection is ready for more: a
//! slow reader holds the rows the answer is made of, not their rendering.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{stream, Stream};

/// About how much JSON one piece holds.
pub const PIECE_BYTES: usize = 64 * 1024;

/// A 200 answer of JSON `pieces`, sent with `Transfer-Encoding: chunked`.
pub fn answer(pieces: impl Iterator<Item = Bytes> + Send + 'static) -> Response {
    streamed(stream::iter(pieces.map(Ok::<_, Infallible>)))
}

/// As [`answer`], of pieces that may fail to be made: the answer then ends
/// cut short.
pub fn streamed<E>(pieces: impl Stream<Item = Result<Bytes, E>> + Send + 'static) -> Response
where
    E: Into<axum::BoxError>,
{
    ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(pieces)).into_response()
}
