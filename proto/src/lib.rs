//! sweep's wire protocol (`sweep.v1`): generated prost messages and tonic clients/servers.
//!
//! Generated code lives in [`pb`]; the encoded descriptor set is [`FILE_DESCRIPTOR_SET`], for
//! gRPC server reflection.

/// Generated code for package `sweep.v1`.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all
)]
pub mod pb {
    tonic::include_proto!("sweep.v1");
}

pub mod conn;
pub mod files;
pub mod json;
pub mod transfer;

impl pb::SweepInfo {
    /// Whether the sweep will change no more: finished or stopped with nothing running. A Watch
    /// stream ends by itself then, and only then.
    pub fn is_over(&self) -> bool {
        (self.state == pb::SweepState::Finished as i32
            || self.state == pb::SweepState::Stopped as i32)
            && self.running == 0
    }
}

/// The encoded `FileDescriptorSet` of sweep.proto.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sweep_descriptor.bin"));

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn descriptor_set_decodes_and_names_both_services() {
        let fds = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let file = fds
            .file
            .iter()
            .find(|f| f.package() == "sweep.v1")
            .expect("sweep.v1 is in the set");
        let services: Vec<&str> = file.service.iter().map(|s| s.name()).collect();
        assert_eq!(services, ["Coordinator", "Sweeps"]);
    }

    #[test]
    fn messages_round_trip() {
        let t = super::pb::Trial {
            sweep_id: "s".into(),
            trial: 3,
            attempt: 2,
            ..Default::default()
        };
        let back = super::pb::Trial::decode(t.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, t);
    }
}
