//! Micro-benchmarks of the hot path's pure parts: decoding a relayed frame,
//! encoding what goes out, and the group rules for a relay and a join.
//! Run with `cargo bench --bench core`.

use bytes::Bytes;
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use prost::Message as _;
use sigway_core::proto::sigver::{Content, Message, message::Type};
use sigway_core::sigver::codec;
use sigway_core::sigver::state::{Action, ContentIn, GroupState, SignalingId, SignalingIds};

#[derive(Default)]
struct Counter(u32);

impl SignalingIds for Counter {
    fn allocate(&mut self) -> SignalingId {
        self.0 += 1;
        self.0
    }
    fn release(&mut self, _: SignalingId) {}
}

fn frame(size: usize) -> Bytes {
    let content = Content {
        sender_id: 0,
        recipient_id: 0,
        last_data: false,
        data: vec![7u8; size].into(),
    };
    Message {
        r#type: Some(Type::Content(content)),
    }
    .encode_to_vec()
    .into()
}

fn bench(c: &mut Criterion) {
    let small = frame(100);
    c.bench_function("decode content 100 B", |b| {
        b.iter(|| codec::decode(black_box(small.clone())))
    });
    let data = Bytes::from(vec![7u8; 100]);
    c.bench_function("encode content 100 B", |b| {
        b.iter(|| codec::content(1, 0, black_box(data.clone())))
    });

    let mut group = GroupState::default();
    let mut ids = Counter::default();
    let mut out: Vec<Action> = Vec::new();
    group.attach(1, false);
    group.attach(2, false);
    group.connect(1, 100, &[], &mut ids, &mut out);
    group.connect(2, 200, &[], &mut ids, &mut out);
    c.bench_function("relay joiner -> member (rules only)", |b| {
        b.iter(|| {
            out.clear();
            let content = ContentIn {
                data: data.clone(),
                ..ContentIn::default()
            };
            group.content(2, black_box(content), &mut out);
        })
    });

    c.bench_function("join: attach + connect + leave", |b| {
        let mut peer = 10u64;
        b.iter(|| {
            out.clear();
            peer += 1;
            group.attach(peer, false);
            group.connect(peer, 7, &[], &mut ids, &mut out);
            group.leave(peer, &mut ids, &mut out);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
