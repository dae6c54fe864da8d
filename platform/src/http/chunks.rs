//! A response body of several buffers whose total length is known up front: sent with a
//! `Content-Length` like one buffer, without copying the pieces into one. Large answers
//! (an agenda is megabytes of JSON) are written into chunks of [`CHUNK`] bytes: buffers
//! that size are recycled by the allocator, where one of megabytes is fresh memory from the
//! kernel (zeroed page by page) every time.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// About how large each chunk of a [`Chunked`] writer grows before the next begins.
pub const CHUNK: usize = 64 * 1024;

/// Bytes written in chunks: write into [`Chunked::buffer`], call [`Chunked::cut`] between
/// pieces (a piece is never split), and [`Chunked::finish`] at the end.
#[derive(Debug, Default)]
pub struct Chunked {
    done: VecDeque<Bytes>,
    length: u64,
    /// The chunk being written.
    pub buffer: Vec<u8>,
}

impl Chunked {
    pub fn new() -> Self {
        Self {
            done: VecDeque::new(),
            length: 0,
            buffer: Vec::with_capacity(CHUNK + CHUNK / 8),
        }
    }

    /// Starts the next chunk if this one is full.
    pub fn cut(&mut self) {
        if self.buffer.len() >= CHUNK {
            let full = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK + CHUNK / 8));
            self.length += full.len() as u64;
            self.done.push_back(Bytes::from(full));
        }
    }

    /// The body of everything written.
    pub fn finish(mut self) -> ChunksBody {
        if !self.buffer.is_empty() {
            self.length += self.buffer.len() as u64;
            self.done.push_back(Bytes::from(self.buffer));
        }
        ChunksBody {
            chunks: self.done,
            remaining: self.length,
        }
    }
}

/// Chunks sent one after the other, their total length announced.
#[derive(Debug)]
pub struct ChunksBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl ChunksBody {
    /// Bytes left to send.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// Everything in one buffer (tests, small answers).
    pub fn to_vec(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }
}

impl Body for ChunksBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.remaining -= chunk.len() as u64;
        }
        Poll::Ready(next.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn pieces_are_kept_whole_in_chunks_and_the_length_is_announced() {
        let mut out = Chunked::new();
        let piece = [b'x'; 1000];
        for _ in 0..200 {
            out.buffer.extend_from_slice(&piece);
            out.cut();
        }
        out.buffer.extend_from_slice(b"end");
        let body = out.finish();
        assert_eq!(body.size_hint().exact(), Some(200_003));
        assert!(body.chunks.len() >= 3, "{}", body.chunks.len());
        assert!(body
            .chunks
            .iter()
            .all(|c| c.len() % 1000 == 0 || c.ends_with(b"end")));
        let expected = body.to_vec();
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected.len(), 200_003);
        assert_eq!(collected, expected);
        assert!(collected.ends_with(b"xend"));
        let empty = Chunked::new().finish();
        assert_eq!(empty.size_hint().exact(), Some(0));
        assert!(empty.is_end_stream());
    }
}
