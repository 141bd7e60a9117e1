//! The ROUTER's sends to one peer: straight into the socket while nothing is queued, through
//! the peer's writer otherwise. Whatever mix of the two a peer that reads slowly forces,
//! every frame arrives whole, once, and in the order it was sent.

use bytes::Bytes;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use volley_proto::zmtp::dealer::Dealer;
use volley_proto::zmtp::router::{bind, PeerEvent};
use volley_proto::zmtp::RouterLimits;

/// Frame `i`: its number, then a pattern that tells each byte's place, of a size that
/// varies from a short header's to a long one's, some past the writer's copy threshold.
fn frame(i: u32) -> Bytes {
    let len = if i.is_multiple_of(97) {
        40_000
    } else {
        4 + (i as usize * 7919) % 20_000
    };
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(&i.to_be_bytes());
    body.extend((4..len).map(|k| (k as u32 ^ i) as u8));
    Bytes::from(body)
}

#[tokio::test]
async fn a_peer_that_reads_late_gets_every_frame_whole_and_in_order() {
    const FRAMES: u32 = 3_000;
    let shutdown = CancellationToken::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut router = bind(listener, RouterLimits::default(), shutdown.clone()).unwrap();
    let mut dealer = Dealer::connect(&router.endpoint, Duration::from_secs(5), 1 << 20)
        .await
        .unwrap();
    let peer = match tokio::time::timeout(Duration::from_secs(5), router.events.recv()).await {
        Ok(Some(PeerEvent::Accepted(peer))) => peer,
        other => panic!("expected the dealer's connection, got {other:?}"),
    };

    // The dealer reads nothing for a while: the socket's buffers fill, a direct send
    // stops part-way, and the rest queue behind it (the sender waits when the queue is full).
    let sender = router.sender.clone();
    let sending = tokio::spawn(async move {
        for i in 0..FRAMES {
            sender.send(&peer, frame(i)).await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..FRAMES {
        let message = tokio::time::timeout(Duration::from_secs(10), dealer.recv())
            .await
            .unwrap_or_else(|_| panic!("frame {i} within 10 s"))
            .unwrap();
        assert!(message.rest.is_empty());
        let got = u32::from_be_bytes(message.first[..4].try_into().unwrap());
        assert_eq!(got, i, "frames out of order");
        assert!(message.first == frame(i), "frame {i} arrived altered");
    }
    sending.await.unwrap();
    shutdown.cancel();
}
