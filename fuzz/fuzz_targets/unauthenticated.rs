//! A relay core fed by clients without credentials: the input is split into messages at 0xFF bytes, sent
//! alternately over UDP and TCP and also as peer data, with the clock moving between them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hualu_turn::fuzzing::unauthenticated(data);
});
