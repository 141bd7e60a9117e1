//! The gRPC API's message codec: prost's encoding, decoded from one contiguous slice.
//!
//! tonic hands a decoder each message as a [`DecodeBuf`] over its receive buffer. prost
//! reading a `Buf` advances it once per field and varint, and every advance of that buffer
//! goes through `BytesMut`'s bookkeeping: in the load generator about a fifth of the
//! instructions per outcome. A message always lies whole in the buffer's first chunk, so
//! this codec decodes it from that slice, where an advance is a pointer bump, and then
//! consumes it once. Encoding is prost's, straight into tonic's send buffer (through a
//! vector first cost more, measured). The bytes on the wire are prost's either way.

use bytes::Buf;
use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// The codec every generated client and server of the API uses (`codec_path` in
/// `build.rs`): `T` is what this side sends, `U` what it receives.
#[derive(Debug, Clone)]
pub struct SliceCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SliceCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SliceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder(PhantomData)
    }
}

/// Encodes as prost does, into tonic's send buffer.
#[derive(Debug, Clone)]
pub struct ProstEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for ProstEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // EncodeBuf grows as needed, so the only error prost has (no room) cannot happen.
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a message: {e}")))
    }
}

/// Decodes a message from the contiguous slice it arrives in.
#[derive(Debug, Clone)]
pub struct SliceDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        let decoded = if buf.chunk().len() == len {
            U::decode(buf.chunk())
        } else {
            U::decode(buf.copy_to_bytes(len))
        };
        let message = decoded.map_err(|e| Status::internal(format!("decoding a message: {e}")))?;
        if buf.has_remaining() {
            buf.advance(buf.remaining());
        }
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ExecuteRequest, TaskInfo, TaskState};
    use bytes::{BufMut, Bytes, BytesMut};
    use http_body::Body as _;
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tonic::codec::Streaming;

    /// A request body that delivers the bytes in the chunks given.
    struct Chunks(VecDeque<Bytes>);

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
            Poll::Ready(self.0.pop_front().map(|chunk| Ok(http_body::Frame::data(chunk))))
        }
    }

    fn framed(messages: &[&dyn Fn(&mut BytesMut)]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for encode in messages {
            let mut message = BytesMut::new();
            encode(&mut message);
            out.put_u8(0);
            out.put_u32(u32::try_from(message.len()).expect("small"));
            out.put(message);
        }
        out.to_vec()
    }

    async fn decoded<M: Message + Default + Send + 'static>(chunks: Vec<Vec<u8>>) -> Result<Vec<M>, Status> {
        let body = Chunks(chunks.into_iter().map(Bytes::from).collect());
        let mut stream = Streaming::new_request(SliceDecoder::<M>(PhantomData), body, None, None);
        let mut messages = Vec::new();
        while let Some(message) = stream.message().await? {
            messages.push(message);
        }
        Ok(messages)
    }

    fn outcome(task_id: u64, result: &str) -> TaskInfo {
        TaskInfo {
            task_id,
            state: TaskState::Completed as i32,
            result: result.into(),
            submitted_us: 1_765_000_000_123_456,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn messages_decode_to_what_prost_encoded_however_the_bytes_are_cut() {
        let (a, b, c) = (
            outcome(1, "{\"x\":[1,2,3]}"),
            outcome(2, "null"),
            outcome(u64::MAX, &"é".repeat(300)),
        );
        let bytes = framed(&[
            &|buf| a.encode(buf).expect("grows"),
            &|buf| b.encode(buf).expect("grows"),
            &|buf| c.encode(buf).expect("grows"),
        ]);
        let whole = decoded::<TaskInfo>(vec![bytes.clone()]).await.expect("valid");
        assert_eq!(whole, vec![a.clone(), b.clone(), c.clone()]);
        for cut in [1, 5, 7, bytes.len() / 2, bytes.len() - 1] {
            let pieces = vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()];
            assert_eq!(
                decoded::<TaskInfo>(pieces).await.expect("valid"),
                vec![a.clone(), b.clone(), c.clone()]
            );
        }
        let request = ExecuteRequest {
            function_id: 7,
            args: "[1]".into(),
        };
        let bytes = framed(&[&|buf| request.encode(buf).expect("grows")]);
        assert_eq!(
            decoded::<ExecuteRequest>(vec![bytes]).await.expect("valid"),
            vec![request]
        );
    }

    #[tokio::test]
    async fn the_encoder_writes_prosts_bytes() {
        let (small, large) = (outcome(1, "null"), outcome(2, &"x".repeat(200_000)));
        let messages = vec![small.clone(), large.clone(), small.clone()];
        let mut body = Box::pin(tonic::codec::EncodeBody::new_client(
            SliceCodec::<TaskInfo, TaskInfo>::default().encoder(),
            futures::stream::iter(messages.clone().into_iter().map(Ok)),
            None,
            None,
        ));
        let mut sent = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            sent.extend_from_slice(frame.expect("encodes").data_ref().expect("a data frame"));
        }
        let by_prost = framed(&[
            &|buf| small.encode(buf).expect("grows"),
            &|buf| large.encode(buf).expect("grows"),
            &|buf| small.encode(buf).expect("grows"),
        ]);
        assert_eq!(sent, by_prost);
    }

    #[tokio::test]
    async fn garbage_is_an_internal_error_not_a_panic() {
        let garbage: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        let bytes = framed(&[&|buf| buf.put_slice(garbage)]);
        let status = decoded::<TaskInfo>(vec![bytes]).await.expect_err("not a message");
        assert_eq!(status.code(), tonic::Code::Internal);
    }
}
