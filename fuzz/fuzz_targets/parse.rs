//! The codecs alone: any bytes as a STUN message (and the attributes the relay reads) and as ChannelData.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hualu_turn::fuzzing::parse(data);
});
