use node_server::{FromTerm, ToTerm};

#[derive(ToTerm, FromTerm)]
enum Op {
    Add(i64, i64),
    #[term(rename = "add")]
    Plus(i64, i64),
}

#[derive(ToTerm, FromTerm)]
#[term(record)]
enum NotAStruct {
    A,
}

fn main() {}
