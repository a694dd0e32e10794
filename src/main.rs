//! `hualu`: the media server's one binary.

fn main() {}
