use node_server::etf::Term;
use node_server::{FromTerm, ToTerm};

#[derive(ToTerm, FromTerm)]
enum Event {
    Tick(u64),
    #[term(other)]
    Unknown(String),
}

#[derive(ToTerm, FromTerm)]
enum Twice {
    #[term(other)]
    First(Term),
    #[term(other)]
    Second(Term),
}

fn main() {}
