//! The evaluator over a fake environment: every construct, every error form, bindings, the
//! shell commands and the limits.

use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::rpc::RpcFailure;

/// A fake node `fake@host` with `kv` registered (a key-value `gen_server`) and one rpc
/// function `m:add/2`; sends are recorded.
#[derive(Default)]
struct Fake {
    sent: Mutex<Vec<(Term, Term)>>,
    kv: Mutex<Vec<(Term, Term)>>,
}

fn pid(id: u32) -> Pid {
    Pid {
        node: Atom::new("fake@host"),
        id,
        serial: 0,
        creation: 0,
    }
}

impl Env for Fake {
    fn node(&self) -> Atom {
        Atom::new("fake@host")
    }
    fn self_pid(&self) -> Pid {
        pid(1)
    }
    fn nodes(&self) -> Vec<Atom> {
        vec![Atom::new("other@host")]
    }
    fn whereis(&self, name: &Atom) -> Option<Pid> {
        (name == "kv").then(|| pid(7))
    }
    fn registered(&self) -> Vec<Atom> {
        vec![Atom::new("kv")]
    }
    fn make_ref(&self) -> Term {
        Term::from(crate::etf::Reference::new(Atom::new("fake@host"), 0, &[1, 2, 3]).unwrap())
    }
    fn send(&self, dest: &Term, msg: Term) -> bool {
        let ok =
            matches!(dest, Term::Pid(_)) || dest.is_atom("kv") || matches!(dest, Term::Tuple(_));
        if ok {
            self.sent.lock().unwrap().push((dest.clone(), msg));
        }
        ok
    }
    fn call(&self, module: &Atom, function: &Atom, args: Vec<Term>) -> Option<EnvFuture<'_>> {
        match (module.as_str(), function.as_str()) {
            ("m", "add") => Some(Box::pin(async move {
                match &args[..] {
                    [Term::Int(a), Term::Int(b)] => Ok(Term::Int(a + b)),
                    _ => Err(RpcFailure::badarg()),
                }
            })),
            ("m", "boom") => Some(Box::pin(async {
                Err(RpcFailure::Exit(Term::atom("boom")))
            })),
            _ => None,
        }
    }
    fn gen_call(&self, dest: Term, request: Term, _timeout: Option<Duration>) -> EnvFuture<'_> {
        Box::pin(async move {
            if !dest.is_atom("kv") {
                return Err(RpcFailure::Exit(Term::atom("noproc")));
            }
            let mut kv = self.kv.lock().unwrap();
            match request.as_tuple() {
                Some([op, k, v]) if op.is_atom("put") => {
                    kv.retain(|(key, _)| key != k);
                    kv.push((k.clone(), v.clone()));
                    Ok(Term::atom("ok"))
                }
                Some([op, k]) if op.is_atom("get") => Ok(kv
                    .iter()
                    .find(|(key, _)| key == k)
                    .map_or(Term::atom("undefined"), |(_, v)| v.clone())),
                _ => Err(RpcFailure::Exit(Term::atom("timeout"))),
            }
        })
    }
    fn gen_cast(&self, dest: Term, request: Term) {
        self.sent
            .lock()
            .unwrap()
            .push((dest, Term::tuple(vec![Term::atom("$gen_cast"), request])));
    }
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// Evaluates each text in turn with shared bindings, returning what the shell prints.
fn session(texts: &[&str]) -> Vec<String> {
    let env = Fake::default();
    let mut b = Bindings::new();
    block(async {
        let mut out = Vec::new();
        for t in texts {
            out.push(eval(t, &mut b, &env).await.text());
        }
        out
    })
}

fn one(text: &str) -> String {
    session(&[text]).pop().unwrap()
}

#[track_caller]
fn check(cases: &[(&str, &str)]) {
    for (text, printed) in cases {
        assert_eq!(one(text), *printed, "{text}");
    }
}

#[test]
fn literals_and_containers() {
    check(&[
        ("1.", "1"),
        ("-3", "-3"),
        ("1.5", "1.5"),
        ("$a", "97"),
        ("ok", "ok"),
        ("'Quoted'", "'Quoted'"),
        ("\"abc\"", "\"abc\""),
        ("<<\"abc\">>", "<<\"abc\">>"),
        ("<<1,2>>", "<<1,2>>"),
        ("{a, \"b\", [1,2]}", "{a,\"b\",[1,2]}"),
        ("[1, 2 | 3]", "[1,2|3]"),
        ("[1 | [2]]", "[1,2]"),
        ("#{b => 1, a => 2}", "#{a => 2,b => 1}"),
        ("16#FF", "255"),
        ("fun lists:map/2", "fun lists:map/2"),
        ("<a@h.1.2>", "<a@h.1.2>"),
        ("{}", "{}"),
        ("[]", "[]"),
        ("\"\"", "[]"),
    ]);
}

#[test]
fn arithmetic_comparison_boolean_lists() {
    check(&[
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("7 div 2", "3"),
        ("-7 div 2", "-3"),
        ("-7 rem 2", "-1"),
        ("7 / 2", "3.5"),
        ("- (2 - 5)", "3"),
        ("+ 4", "4"),
        ("1 bsl 70", "1180591620717411303424"),
        ("5 band 3", "1"),
        ("bnot 0", "-1"),
        ("99999999999999999999 * 2", "199999999999999999998"),
        ("1 == 1.0", "true"),
        ("1 =:= 1.0", "false"),
        ("1 /= 2", "true"),
        ("1 =/= 1", "false"),
        ("1 < a", "true"),
        ("{1} < {1, 0}", "true"),
        ("2 >= 2", "true"),
        ("2 =< 1", "false"),
        ("3 > 2", "true"),
        ("true and false", "false"),
        ("true or false", "true"),
        ("true xor true", "false"),
        ("not true", "false"),
        ("true andalso 1", "1"),
        ("false andalso undefined_thing", "false"),
        ("true orelse x", "true"),
        ("false orelse 2", "2"),
        ("[1, 2] ++ [3]", "[1,2,3]"),
        ("\"ab\" ++ \"c\"", "\"abc\""),
        ("[1, 2, 3, 2] -- [2]", "[1,3,2]"),
        ("[1] ++ [2] ++ [3]", "[1,2,3]"),
        ("[1, 2, 1, 3, 1] -- [1, 1, 4]", "[2,3,1]"),
    ]);
}

#[test]
fn matching_and_bindings() {
    check(&[
        ("X = 20, X + 22.", "42"),
        ("{A, B} = {1, 2}, A + B", "3"),
        ("[H | T] = [1, 2, 3], {H, T}", "{1,[2,3]}"),
        ("#{a := V} = #{a => 1, b => 2}, V", "1"),
        ("{_, _} = {1, 2}", "{1,2}"),
        ("X = Y = 3, X + Y", "6"),
        ("{X, X} = {1, 1}", "{1,1}"),
        ("\"ab\" ++ R = \"abc\", R", "\"c\""),
        ("[] = []", "[]"),
        ("-1 = -1", "-1"),
        ("M = #{a => 1}, M#{a := 2, b => 3}", "#{a => 2,b => 3}"),
        ("K = k, #{K := V} = #{k => v}, V", "v"),
    ]);
    let out = session(&[
        "X = 1.",
        "X + 1.",
        "X = 2.",
        "Y = X + 10.",
        "Y.",
        "b().",
        "f(X).",
        "b().",
        "f().",
        "b().",
    ]);
    assert_eq!(
        out,
        vec![
            "1",
            "2",
            "** exception error: no match of right hand side value 2",
            "11",
            "11",
            "X = 1\nY = 11\nok",
            "ok",
            "Y = 11\nok",
            "ok",
            "ok",
        ]
    );
    // A failing evaluation binds nothing.
    let out = session(&["Z = 5, error(x).", "Z."]);
    assert_eq!(out[1], "* 1:1: variable 'Z' is unbound");
}

#[test]
fn case_if_begin() {
    check(&[
        ("case {ok, 1} of {ok, N} -> N; _ -> none end", "1"),
        ("case 5 of N when N > 3 -> big; _ -> small end", "big"),
        ("case 1 of N when N > 3 -> big; _ -> small end", "small"),
        ("case a of X when is_atom(X), X =/= b -> yes end", "yes"),
        ("case a of X when is_integer(X); X == a -> yes end", "yes"),
        // A guard that raises is false.
        ("case a of X when X + 1 > 0 -> yes; _ -> no end", "no"),
        ("case 1 of 1 -> A = 2; _ -> A = 3 end, A", "2"),
        ("if 1 > 2 -> a; true -> b end", "b"),
        ("begin X = 1, X + 1 end", "2"),
    ]);
}

#[test]
fn bifs_and_libraries() {
    check(&[
        ("self()", "<fake@host.1.0>"),
        ("node()", "fake@host"),
        ("erlang:nodes()", "[other@host]"),
        ("whereis(kv)", "<fake@host.7.0>"),
        ("whereis(nope)", "undefined"),
        ("registered()", "[kv]"),
        ("make_ref()", "#Ref<fake@host.3.2.1>"),
        ("length([1,2,3])", "3"),
        ("element(2, {a, b})", "b"),
        ("setelement(1, {a, b}, c)", "{c,b}"),
        ("tuple_size({a, b})", "2"),
        ("hd([1, 2])", "1"),
        ("tl([1, 2])", "[2]"),
        ("abs(-3)", "3"),
        ("max(1, 2)", "2"),
        ("min(1, 2)", "1"),
        ("is_atom(a)", "true"),
        ("is_integer(1.0)", "false"),
        ("is_list([])", "true"),
        ("is_binary(<<>>)", "true"),
        ("is_map(#{})", "true"),
        ("is_tuple({})", "true"),
        ("is_pid(self())", "true"),
        ("is_boolean(true)", "true"),
        ("is_float(1.0)", "true"),
        ("is_number(1)", "true"),
        ("atom_to_list(abc)", "\"abc\""),
        ("list_to_atom(\"abc\")", "abc"),
        ("integer_to_list(42)", "\"42\""),
        ("list_to_integer(\"-42\")", "-42"),
        ("binary_to_list(<<\"ab\">>)", "\"ab\""),
        ("list_to_binary([\"ab\", $c, <<\"d\">>])", "<<\"abcd\">>"),
        ("binary_to_term(term_to_binary({a, [1]}))", "{a,[1]}"),
        ("term_to_binary(a)", "<<131,119,1,97>>"),
        ("erlang:length([1])", "1"),
        ("lists:reverse([1, 2, 3])", "[3,2,1]"),
        ("lists:seq(1, 5)", "[1,2,3,4,5]"),
        ("lists:seq(1, 10, 3)", "[1,4,7,10]"),
        ("lists:member(b, [a, b])", "true"),
        ("lists:append([1], [2])", "[1,2]"),
        ("lists:append([[1], [2, 3]])", "[1,2,3]"),
        ("lists:nth(2, [a, b, c])", "b"),
        ("lists:sum([1, 2, 3])", "6"),
        ("lists:max([1, 3, 2])", "3"),
        ("lists:min([1, 3, 2])", "1"),
        ("lists:sort([3, 1, 2])", "[1,2,3]"),
        ("lists:usort([3, 1, 3, 2])", "[1,2,3]"),
        ("lists:keyfind(b, 1, [{a, 1}, {b, 2}])", "{b,2}"),
        ("lists:keyfind(c, 1, [{a, 1}])", "false"),
        ("lists:keystore(b, 1, [{a, 1}], {b, 2})", "[{a,1},{b,2}]"),
        ("lists:last([1, 2])", "2"),
        ("lists:flatten([1, [2, [3]]])", "[1,2,3]"),
        ("lists:zip([1, 2], [a, b])", "[{1,a},{2,b}]"),
        ("lists:duplicate(3, x)", "[x,x,x]"),
        ("lists:sublist([1, 2, 3], 2)", "[1,2]"),
        ("lists:split(1, [1, 2, 3])", "{[1],[2,3]}"),
        ("maps:get(a, #{a => 1})", "1"),
        ("maps:get(b, #{a => 1}, none)", "none"),
        ("maps:put(b, 2, #{a => 1})", "#{a => 1,b => 2}"),
        ("maps:remove(a, #{a => 1})", "#{}"),
        ("maps:keys(#{a => 1, b => 2})", "[a,b]"),
        ("maps:values(#{a => 1, b => 2})", "[1,2]"),
        ("maps:to_list(#{a => 1})", "[{a,1}]"),
        ("maps:from_list([{a, 1}])", "#{a => 1}"),
        ("maps:is_key(a, #{a => 1})", "true"),
        ("maps:size(#{a => 1})", "1"),
        ("maps:find(a, #{a => 1})", "{ok,1}"),
        ("maps:find(b, #{a => 1})", "error"),
        ("maps:merge(#{a => 1}, #{b => 2})", "#{a => 1,b => 2}"),
        ("proplists:get_value(a, [{a, 1}])", "1"),
        ("proplists:get_value(b, [{a, 1}])", "undefined"),
        ("proplists:get_value(b, [{a, 1}], 0)", "0"),
        ("proplists:get_value(x, [x])", "true"),
        (
            "proplists:get_all_values(a, [{a, 1}, {b, 2}, {a, 3}])",
            "[1,3]",
        ),
        ("proplists:lookup(a, [{a, 1}])", "{a,1}"),
        ("proplists:lookup(b, [{a, 1}])", "none"),
        ("proplists:delete(a, [{a, 1}, {b, 2}])", "[{b,2}]"),
    ]);
}

#[test]
fn calls_messages_and_gen_server() {
    check(&[
        ("m:add(40, 2)", "42"),
        ("M = m, F = add, M:F(1, 2)", "3"),
        (
            "gen_server:call(kv, {put, a, 1}), gen_server:call(kv, {get, a})",
            "1",
        ),
        ("gen_server:call(kv, {get, a}, 1000)", "undefined"),
        ("gen_server:cast(kv, hello)", "ok"),
        ("kv ! hi", "hi"),
        ("self() ! {x, 1}", "{x,1}"),
        ("{kv, 'other@host'} ! hi", "hi"),
        (
            "gen_server:call(nosuch, x)",
            "** exception exit: {noproc,{gen_server,call,[nosuch,x]}}",
        ),
        ("m:boom()", "** exception exit: boom"),
        (
            "gen_server:call(kv, weird, 100)",
            "** exception exit: {timeout,{gen_server,call,[kv,weird,100]}}",
        ),
        ("erlang:send(kv, x)", "x"),
        ("node(self())", "fake@host"),
        ("node(1)", "** exception error: bad argument"),
        ("m:add(a, 1)", "** exception error: bad argument"),
    ]);
    let env = Fake::default();
    let mut b = Bindings::new();
    block(eval("kv ! hello, gen_server:cast(kv, c).", &mut b, &env));
    let sent = env.sent.lock().unwrap().clone();
    assert_eq!(
        sent,
        vec![
            (Term::atom("kv"), Term::atom("hello")),
            (
                Term::atom("kv"),
                Term::tuple(vec![Term::atom("$gen_cast"), Term::atom("c")])
            )
        ]
    );
}

#[test]
fn errors_print_as_the_shell_prints_them() {
    check(&[
        (
            "X = 1, 2 = X",
            "** exception error: no match of right hand side value 1",
        ),
        (
            "{a, B} = {b, 1}",
            "** exception error: no match of right hand side value {b,1}",
        ),
        ("hd([])", "** exception error: bad argument"),
        ("element(5, {a})", "** exception error: bad argument"),
        ("length(1)", "** exception error: bad argument"),
        ("nope ! hi", "** exception error: bad argument"),
        ("not 1", "** exception error: bad argument"),
        ("1 and true", "** exception error: bad argument"),
        ("1 andalso true", "** exception error: bad argument: 1"),
        (
            "1 + a",
            "** exception error: an error occurred when evaluating an arithmetic expression",
        ),
        (
            "1 / 0",
            "** exception error: an error occurred when evaluating an arithmetic expression",
        ),
        (
            "10 div 0",
            "** exception error: an error occurred when evaluating an arithmetic expression",
        ),
        (
            "- a",
            "** exception error: an error occurred when evaluating an arithmetic expression",
        ),
        (
            "foo:bar()",
            "** exception error: undefined function foo:bar/0",
        ),
        (
            "lists:foldl(1, 2, 3)",
            "** exception error: undefined function lists:foldl/3",
        ),
        (
            "not_a_fun(1)",
            "** exception error: undefined shell command not_a_fun/1",
        ),
        (
            "lists:reverse(1)",
            "** exception error: no function clause matching lists:reverse(1)",
        ),
        (
            "case x of y -> 1 end",
            "** exception error: no case clause matching x",
        ),
        (
            "if false -> 1 end",
            "** exception error: no true branch found when evaluating an if expression",
        ),
        ("exit(foo)", "** exception exit: foo"),
        ("exit({a, \"b\"})", "** exception exit: {a,\"b\"}"),
        ("throw(x)", "** exception throw: x"),
        ("error(foo)", "** exception error: foo"),
        (
            "error(system_limit)",
            "** exception error: a system limit has been reached",
        ),
        ("maps:get(a, #{})", "** exception error: bad key: a"),
        ("maps:get(a, 1)", "** exception error: bad map: 1"),
        ("M = #{}, M#{a := 1}", "** exception error: bad key: a"),
        ("Y", "* 1:1: variable 'Y' is unbound"),
        ("X = 1, X + Y", "* 1:12: variable 'Y' is unbound"),
        ("case 1 of 1 -> A = 1; 2 -> ok end, A", "1"),
        (
            "case 2 of 1 -> A = 1; 2 -> ok end, A",
            "* 1:36: variable 'A' is unbound",
        ),
        (
            "false andalso (B = 1), B",
            "* 1:24: variable 'B' is unbound",
        ),
        (
            "f(1)",
            "** exception error: no function clause matching call to f/1",
        ),
        ("1 + )", "* 1:5: syntax error before: ')'"),
        ("1 + .", "* 1:5: syntax error before: '.'"),
        ("foo bar.", "* 1:5: syntax error before: bar"),
        ("1 X.", "* 1:3: syntax error before: X"),
        ("1 \"s\".", "* 1:3: syntax error before: \"s\""),
        ("(1 end.", "* 1:4: syntax error before: 'end'"),
        ("1 1.5.", "* 1:3: syntax error before: 1.5"),
        ("{a 1}.", "* 1:4: syntax error before: 1"),
        ("1 ++ ++ 2.", "* 1:6: syntax error before: '++'"),
        ("f(1) = 1", "* 1:6: illegal pattern"),
        (
            "case 1 of X when foo(X) -> 1; _ -> 2 end",
            "* 1:18: illegal guard expression",
        ),
        (
            "case 1 of X when X = 1 -> 1; _ -> 2 end",
            "* 1:18: illegal guard expression",
        ),
        (
            "if lists:member(1, [1]) -> a; true -> b end",
            "* 1:4: illegal guard expression",
        ),
        ("\n  x y", "* 2:5: syntax error before: y"),
    ]);
}

#[test]
fn limits() {
    let long = format!("\"{}\"", "a".repeat(MAX_INPUT));
    assert!(one(&long).contains("the limit is 65536"), "{}", one(&long));
    let deep = format!(
        "{}1{}",
        "[".repeat(MAX_NESTING + 1),
        "]".repeat(MAX_NESTING + 1)
    );
    assert!(one(&deep).contains("nests "));
    // Moderately deep evaluates in any build (on a test thread's 2 MiB stack).
    let ok = format!("{}1{}", "{".repeat(20), "}".repeat(20));
    assert!(one(&ok).starts_with("{{{"));
    let sum = vec!["1"; 20].join(" + ");
    assert_eq!(one(&sum), "20");
    // As deep as the nesting limit allows: a value, or (in an unoptimised build, whose
    // frames are large) the stack budget's error; never an overflow.
    for open in ["{", "[", "(", "- ", "begin "] {
        let close = match open {
            "{" => "}",
            "[" => "]",
            "(" => ")",
            "begin " => " end",
            _ => "",
        };
        let text = format!(
            "{}1{}",
            open.repeat(MAX_NESTING - 2),
            close.repeat(MAX_NESTING - 2)
        );
        let out = one(&text);
        assert!(
            !out.starts_with('*') || out.contains("nests ") || out.contains("system limit"),
            "{open}: {out}"
        );
    }
    check(&[
        (
            "1 bsl 100000000",
            "** exception error: a system limit has been reached",
        ),
        (
            "X = 1 bsl 1000000, X * X",
            "** exception error: a system limit has been reached",
        ),
        (
            "lists:seq(1, 100000000)",
            "** exception error: a system limit has been reached",
        ),
        (
            "lists:duplicate(100000000, a)",
            "** exception error: a system limit has been reached",
        ),
        (
            "L = lists:seq(1, 4000000), lists:duplicate(4000000, L)",
            "** exception error: a system limit has been reached",
        ),
        (
            "L = lists:seq(1, 3000000), {L, L, L}",
            "** exception error: a system limit has been reached",
        ),
        ("L = lists:seq(1, 1000000), length(L ++ L)", "2000000"),
        (
            "1.0e308 * 10",
            "** exception error: an error occurred when evaluating an arithmetic expression",
        ),
    ]);
    // Hostile soup never panics.
    let alphabet: Vec<char> = "()[]{}#<>=:;,.|!+-*/ \"'$_aXz019ofendcasewhenif"
        .chars()
        .collect();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..3000 {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let mut s = String::new();
        let mut x = state;
        for _ in 0..(x % 20) {
            x = x.wrapping_mul(0x2545_F491_4F6C_DD1D).rotate_left(17);
            s.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        let _ = one(&s);
    }
}

#[test]
fn bindings_as_terms() {
    let mut b = Bindings::new();
    b.insert("X", Term::Int(1));
    let t = b.to_term();
    assert_eq!(t.to_string(), "[{'X',1}]");
    assert_eq!(Bindings::from_term(&t), Some(b));
    assert_eq!(Bindings::from_term(&Term::parse("[{x, 1}]").unwrap()), None);
}
