//! What a logged-in client sends, as the session reads it: the session's
//! flow over the buffered bytes (either way), the routing unit scanner,
//! and the prepared-statement rewriter over every message, never panic
//! whatever the bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgwarden::prepared::rewrite::{self, Ctx};
use pgwarden::prepared::{
    ClientStatements, Followed, Outstanding, Registry, ServerStatements, Unnamed,
};
use pgwarden::client::flow::{Flow, Inbound, Outbound};
use pgwarden::routing::unit::first_unit;
use pgwarden::wire::codec::whole_at;
use pgwarden::state::ServerParams;

fuzz_target!(|data: &[u8]| {
    let _ = first_unit(data, 1 << 20, &[], |_| None);
    let registry = Registry::default();
    let mut client = ClientStatements::default();
    let mut server = ServerStatements::default();
    let mut queue = Outstanding::default();
    let mut settings = ServerParams::default();
    let mut followed = Followed::default();
    let mut pins = 0;
    let mut unnamed = Unnamed::default();
    let mut inert = pgwarden::state::InertMemo::default();
    let mut flow = Flow::new(1 << 20, 1 << 16);
    let outbound = Outbound {
        tracker: None,
        server: None,
        registry: &registry,
        one_unit: data.first() == Some(&1),
        routed: true,
        queries: None,
    };
    let _ = flow.on_client(data, outbound);
    let inbound = Inbound {
        tracker: None,
        prepared: &mut server,
        settings: &mut settings,
    };
    let _ = flow.on_server(data, inbound);
    let mut pos = 0;
    while let Ok(Some((tag, body, end))) = whole_at(data, pos, 1 << 20) {
        let mut ctx = Ctx {
            registry: &registry,
            client: &mut client,
            server: &mut server,
            queue: &mut queue,
            max: 4,
            since: 0,
            settings: &mut settings,
            followed: &mut followed,
            // Alternate, so that block statements are followed too.
            watching: pos % 2 == 1,
            pins: &mut pins,
            refuse_pins: false,
            pooled: true,
            unnamed: &mut unnamed,
            inert: &mut inert,
        };
        let mut out = BytesMut::new();
        let _ = rewrite::message(&mut ctx, tag, body, &mut out);
        if end <= pos {
            break;
        }
        pos = end;
    }
});
