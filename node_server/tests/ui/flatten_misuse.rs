use node_server::{FromTerm, ToTerm};

#[derive(ToTerm, FromTerm)]
struct Inner {
    a: i32,
}

#[derive(ToTerm, FromTerm)]
struct Pair(#[term(flatten)] Inner, i32);

#[derive(ToTerm, FromTerm)]
enum Op {
    Add(#[term(flatten)] Inner, i64),
}

#[derive(ToTerm, FromTerm)]
#[term(record)]
struct Rec {
    #[term(flatten)]
    inner: Inner,
}

#[derive(ToTerm, FromTerm)]
struct Renamed {
    #[term(flatten, rename = "x", default)]
    inner: Inner,
}

#[derive(ToTerm, FromTerm)]
struct NotAMap {
    id: i32,
    #[term(flatten)]
    count: u64,
}

fn main() {}
