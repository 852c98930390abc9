use node_server::{FromTerm, ToTerm};

#[derive(ToTerm, FromTerm)]
#[term(recrd)]
struct Point {
    x: i32,
    #[term(rename = "Y", defualt)]
    y: i32,
}

#[derive(ToTerm)]
enum Op {
    #[term(renme = "plus")]
    Add(i64, i64),
}

fn main() {}
