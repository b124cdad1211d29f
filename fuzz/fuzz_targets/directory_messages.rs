//! Fuzz target: directory requests and responses from an untrusted libp2p peer (JSON), and the signatures of the records and enrollments they carry.
#![no_main]

use intercloud::p2p::protocol::{from_wire, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<Request>(data) {
        match &r {
            Request::Register(rec) => {
                let _ = rec.verify();
            }
            Request::Push(recs) => {
                for rec in recs {
                    let _ = rec.verify();
                }
            }
            Request::Digest(d) => {
                let _ = from_wire(d);
            }
            Request::Enroll(e) => {
                let _ = e.verify();
            }
            _ => {}
        }
    }
    if let Ok(r) = serde_json::from_slice::<Response>(data) {
        match &r {
            Response::Record(Some(rec)) => {
                let _ = rec.verify();
            }
            Response::Sync { records, digest } => {
                for rec in records {
                    let _ = rec.verify();
                }
                let _ = from_wire(digest);
            }
            Response::Records(recs) => {
                for rec in recs {
                    let _ = rec.verify();
                }
            }
            _ => {}
        }
    }
});
