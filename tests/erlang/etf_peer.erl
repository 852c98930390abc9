%% A corpus of terms made by a real Erlang node, served over a line protocol on stdin/stdout.
%%
%% Started by the Rust interop tests as `erl -noshell -pa DIR -run etf_peer main`.
%% Each request is one line; each reply is one line. Binary data travels as hex (either case
%% accepted, upper case sent), so every line is plain ASCII. Indices count from 0.
%%
%%   ping                 -> pong
%%   count                -> ok N
%%   get I                -> ok printable|opaque BIN_HEX TEXT_HEX
%%                           BIN_HEX is term_to_binary(T_I); TEXT_HEX is the UTF-8 of
%%                           io_lib:format("~w", [T_I]); `printable` means T_I holds no pid,
%%                           reference, port or fun, so that text is valid Erlang syntax.
%%   encodings I          -> ok minor0:HEX minor1:HEX compressed:HEX
%%                           term_to_binary(T_I, Opts) with {minor_version, 0} (FLOAT_EXT,
%%                           Latin-1 atoms), {minor_version, 1} (Latin-1 atoms) and compressed.
%%   check_bin I HEX      -> ok | mismatch DETAILS | error REASON
%%                           binary_to_term of the bytes (all of them) is exactly T_I.
%%   check_text I HEX     -> ok | mismatch DETAILS | error REASON
%%                           the UTF-8 text, scanned and parsed as an Erlang term (a final
%%                           "." is added when missing), is exactly T_I.
%%   selfcheck            -> ok | mismatch I,...  every printable T_I parses back from its
%%                           own ~w text (a sanity check of the corpus).
%%   quit                 -> bye, then the node halts (it halts on end of input too).
%%
%% "Exactly" is =:= except that floats must have the same bits: OTP 25 has 0.0 =:= -0.0.
%% Bad input never crashes the peer: it answers `error REASON`.
-module(etf_peer).

-export([main/0, main/1, corpus/0, same/2]).

%% Longest piece of a term quoted in a reply.
-define(QUOTE_MAX, 300).

main() ->
    main([]).

main(_Args) ->
    ok = io:setopts(standard_io, [binary]),
    Corpus = list_to_tuple(corpus()),
    loop(Corpus).

loop(Corpus) ->
    case io:get_line(standard_io, "") of
        eof ->
            erlang:halt(0);
        {error, Reason} ->
            io:format(standard_error, "etf_peer: reading stdin failed: ~p~n", [Reason]),
            erlang:halt(1);
        Line ->
            Request = string:trim(Line, trailing, "\r\n"),
            Reply =
                try
                    handle(binary:split(Request, <<" ">>, [global, trim_all]), Corpus)
                catch
                    Class:Error:Stack ->
                        io:format(standard_error, "etf_peer: ~p:~p~n~p~n", [Class, Error, Stack]),
                        error_reply(io_lib:format("crash ~w:~w", [Class, Error]))
                end,
            case Reply of
                stop ->
                    reply(<<"bye">>),
                    erlang:halt(0);
                _ ->
                    reply(Reply),
                    loop(Corpus)
            end
    end.

reply(Reply) ->
    Bin = iolist_to_binary(Reply),
    ok = io:put_chars(standard_io, [one_line(Bin), $\n]).

one_line(Bin) ->
    binary:replace(Bin, [<<"\n">>, <<"\r">>], <<" ">>, [global]).

handle([<<"ping">>], _C) ->
    <<"pong">>;
handle([<<"count">>], C) ->
    [<<"ok ">>, integer_to_binary(tuple_size(C))];
handle([<<"get">>, I], C) ->
    with_term(I, C, fun(T) ->
        Kind = case printable(T) of true -> <<"printable">>; false -> <<"opaque">> end,
        [<<"ok ">>, Kind, $\s, hex(term_to_binary(T)), $\s, hex(text(T))]
    end);
handle([<<"encodings">>, I], C) ->
    with_term(I, C, fun(T) ->
        [<<"ok minor0:">>, hex(term_to_binary(T, [{minor_version, 0}])),
         <<" minor1:">>, hex(term_to_binary(T, [{minor_version, 1}])),
         <<" compressed:">>, hex(term_to_binary(T, [{compressed, 9}]))]
    end);
handle([<<"check_bin">>, I, Hex], C) ->
    with_term(I, C, fun(T) -> with_hex(Hex, fun(Bin) -> check_bin(T, Bin) end) end);
handle([<<"check_bin">>, I], C) ->
    %% An empty hex argument is trimmed away by the split.
    handle([<<"check_bin">>, I, <<>>], C);
handle([<<"check_text">>, I, Hex], C) ->
    with_term(I, C, fun(T) -> with_hex(Hex, fun(Bin) -> check_text(T, Bin) end) end);
handle([<<"check_text">>, I], C) ->
    handle([<<"check_text">>, I, <<>>], C);
handle([<<"selfcheck">>], C) ->
    Bad = [integer_to_list(I - 1)
           || I <- lists:seq(1, tuple_size(C)),
              printable(element(I, C)),
              check_text(element(I, C), text(element(I, C))) =/= <<"ok">>],
    case Bad of
        [] -> <<"ok">>;
        _ -> [<<"mismatch ">>, lists:join($,, Bad)]
    end;
handle([<<"quit">>], _C) ->
    stop;
handle([], _C) ->
    <<"error empty_request">>;
handle([Cmd | _], _C) ->
    error_reply(io_lib:format("unknown command or arguments: ~ts", [quote_bin(Cmd)])).

with_term(IndexText, C, Fun) ->
    case catch binary_to_integer(IndexText) of
        I when is_integer(I), I >= 0, I < tuple_size(C) ->
            Fun(element(I + 1, C));
        _ ->
            error_reply(io_lib:format("bad index ~ts (the corpus has ~w terms)",
                                      [quote_bin(IndexText), tuple_size(C)]))
    end.

with_hex(Hex, Fun) ->
    case catch binary:decode_hex(Hex) of
        Bin when is_binary(Bin) -> Fun(Bin);
        _ -> <<"error bad_hex">>
    end.

quote_bin(Bin) ->
    truncate(unicode:characters_to_list(Bin, latin1)).

error_reply(Chars) ->
    [<<"error ">>, unicode:characters_to_binary(Chars)].

hex(Bin) ->
    binary:encode_hex(Bin).

%% The term as ~w prints it, UTF-8 encoded.
text(T) ->
    unicode:characters_to_binary(io_lib:format("~w", [T])).

check_bin(Expected, Bin) ->
    try binary_to_term(Bin, [used]) of
        {Got, Used} when Used =:= byte_size(Bin) ->
            compare(Expected, Got);
        {_, Used} ->
            error_reply(io_lib:format("~w bytes follow the term at offset ~w",
                                      [byte_size(Bin) - Used, Used]))
    catch
        Class:Reason ->
            error_reply(io_lib:format("binary_to_term failed: ~w:~w", [Class, Reason]))
    end.

check_text(Expected, Bin) ->
    case unicode:characters_to_list(Bin) of
        Text when is_list(Text) ->
            case parse(Text) of
                {ok, Got} -> compare(Expected, Got);
                {error, Why} -> error_reply(Why)
            end;
        _ ->
            <<"error text is not UTF-8">>
    end.

parse(Text0) ->
    Trimmed = string:trim(Text0, trailing),
    Text = case lists:suffix(".", Trimmed) of
               true -> Trimmed;
               false -> Trimmed ++ " ."
           end,
    case erl_scan:string(Text) of
        {ok, Tokens, _} ->
            case erl_parse:parse_term(Tokens) of
                {ok, Term} ->
                    {ok, Term};
                {error, {Loc, Mod, Desc}} ->
                    {error, io_lib:format("parse error at ~w: ~ts",
                                          [Loc, truncate(Mod:format_error(Desc))])}
            end;
        {error, {Loc, Mod, Desc}, _} ->
            {error, io_lib:format("scan error at ~w: ~ts",
                                  [Loc, truncate(Mod:format_error(Desc))])}
    end.

compare(Expected, Got) ->
    case same(Expected, Got) of
        true ->
            <<"ok">>;
        false ->
            {Path, E, G} = diff(Expected, Got, []),
            Details = io_lib:format("at ~ts: expected ~ts, got ~ts",
                                    [truncate(io_lib:format("~w", [Path])),
                                     truncate(io_lib:format("~w", [E])),
                                     truncate(io_lib:format("~w", [G]))]),
            [<<"mismatch ">>, unicode:characters_to_binary(Details)]
    end.

truncate(Chars) ->
    Flat = lists:flatten(Chars),
    case length(Flat) > ?QUOTE_MAX of
        true -> lists:sublist(Flat, ?QUOTE_MAX) ++ "...";
        false -> Flat
    end.

%% Exact equality: =:=, except that floats must have the same bits (0.0 vs -0.0).
same(A, B) when is_float(A), is_float(B) ->
    <<A/float>> =:= <<B/float>>;
same(A, B) when is_tuple(A), is_tuple(B) ->
    tuple_size(A) =:= tuple_size(B) andalso same(tuple_to_list(A), tuple_to_list(B));
same([HA | TA], [HB | TB]) ->
    same(HA, HB) andalso same(TA, TB);
same(A, B) when is_map(A), is_map(B) ->
    map_size(A) =:= map_size(B) andalso
        same(lists:sort(maps:to_list(A)), lists:sort(maps:to_list(B)));
same(A, B) ->
    A =:= B.

%% Where two terms that are not the same first differ: {Path, ExpectedPart, GotPart}. A path
%% step is a 1-based position in a tuple or list, {tail, N} for what follows N-1 list elements,
%% or {key, K} for a map value.
diff(A, B, Path) when is_tuple(A), is_tuple(B), tuple_size(A) =:= tuple_size(B) ->
    diff_seq(tuple_to_list(A), tuple_to_list(B), 1, Path);
diff([_ | _] = A, [_ | _] = B, Path) ->
    diff_seq(A, B, 1, Path);
diff(A, B, Path) when is_map(A), is_map(B), map_size(A) =:= map_size(B) ->
    KA = lists:sort(maps:keys(A)),
    KB = lists:sort(maps:keys(B)),
    case same(KA, KB) of
        true ->
            [K | _] = [K || K <- KA, not same(maps:get(K, A), maps:get(K, B))],
            diff(maps:get(K, A), maps:get(K, B), [{key, K} | Path]);
        false ->
            {lists:reverse([keys | Path]), KA, KB}
    end;
diff(A, B, Path) ->
    {lists:reverse(Path), A, B}.

diff_seq([HA | TA], [HB | TB], N, Path) ->
    case same(HA, HB) of
        true -> diff_seq(TA, TB, N + 1, Path);
        false -> diff(HA, HB, [N | Path])
    end;
diff_seq(TA, TB, N, Path) ->
    diff(TA, TB, [{tail, N} | Path]).

%% Whether the term's ~w text is Erlang syntax: no pid, reference, port or fun inside.
printable(T) when is_pid(T); is_reference(T); is_port(T); is_function(T) ->
    false;
printable(T) when is_tuple(T) ->
    printable(tuple_to_list(T));
printable(T) when is_map(T) ->
    printable(maps:to_list(T));
printable([H | T]) ->
    printable(H) andalso printable(T);
printable(_) ->
    true.

%%% The corpus

corpus() ->
    rand:seed(exsss, {1, 2, 3}),
    Hand = integers() ++ floats() ++ atoms() ++ binaries() ++ lists() ++ tuples()
        ++ maps() ++ nested() ++ opaque() ++ external(),
    Generated = [gen(4) || _ <- lists:seq(1, 200)],
    Hand ++ Generated.

integers() ->
    Powers = [7, 8, 15, 16, 27, 31, 32, 53, 63, 64, 100, 2040],
    Around = lists:append([[(1 bsl P) - 1, 1 bsl P, (1 bsl P) + 1] || P <- Powers]),
    [0, 1, -1, 2, 42, 255, 256, -255, -256, 65535, 65536, 1 bsl 3000, -(1 bsl 3000),
     (1 bsl 3000) + 12345, 123456789012345678901234567890]
        ++ Around ++ [-X || X <- Around].

floats() ->
    [0.0, -0.0, 0.1, -0.1, 0.5, 1.0, -1.0, 2.0, 100.0, 123456.0, 1.0e15, 1.0e16, 1.0e20,
     1.0e21, 1.0e22, 1.0e300, -1.0e300, 5.0e-324, -5.0e-324, 2.2250738585072014e-308,
     2.225073858507201e-308, 1.7976931348623157e308, -1.7976931348623157e308,
     3.141592653589793, 0.30000000000000004, 9007199254740992.0, 1.0e-10, 123.456e-7,
     1/3, -2/3].

atoms() ->
    [a, ok, 'Abc', '', 'hello world', 'it\'s', 'quote"double', 'back\\slash', 'new\nline',
     'tab\there', '_x', 'a@b', 'a.b', 'node@host.example', 'a-b', '9lives', true, false,
     undefined, nil, 'after', 'receive', 'end', 'fun', 'case', 'of', 'when', 'andalso',
     'orelse', 'div', 'rem', 'not', 'band', 'bxor', 'catch', 'try', 'begin', 'query',
     'maybe', 'else', 'cond', 'let',
     'привет', 'Привет', '日本', 'ÿé', 'ß', 'é', 'Émile', 'naïve', 'Ÿ',
     list_to_atom([0]), list_to_atom([7]), list_to_atom([127]), list_to_atom([160]),
     list_to_atom([16#1F642]), list_to_atom("a" ++ [16#1F642]),
     list_to_atom(lists:duplicate(255, $a)),
     list_to_atom(lists:duplicate(255, $я)),
     list_to_atom(lists:duplicate(255, 16#65E5)),
     list_to_atom(lists:duplicate(255, 255)),
     list_to_atom(lists:duplicate(64, $Z))].

binaries() ->
    [<<>>, <<0>>, <<"hello">>, <<255, 0, 128>>, <<"привет"/utf8>>, <<"日本語"/utf8>>,
     << <<B>> || B <- lists:seq(0, 255) >>,
     << <<(I * 7 band 255)>> || I <- lists:seq(1, 100 * 1024) >>,
     <<1:1>>, <<0:1>>, <<1, 2, 3:5>>, <<127:7>>, <<16#ABCD:15>>, <<0:7>>,
     <<(binary:copy(<<"x">>, 300))/binary, 5:3>>,
     binary:part(<<"a larger binary to slice">>, 2, 6)].

lists() ->
    [[], [[]], [[], []], "hello", "привет", "日本", [0], [255], [256], [-1],
     lists:seq(0, 255), lists:seq(1, 256), lists:duplicate(65535, $x),
     lists:duplicate(65536, $x),
     [1 | 2], [a, b | c], [1 | <<>>], [1, 2 | {}], [a | #{}], [x | 1.5],
     [[1 | 2] | 3], [1.5, "x", <<"y">>, z], [$a, 1000, $b], [-0.0]].

tuples() ->
    [{}, {{}}, {a}, {ok, 1}, {error, "reason"}, {0.0, -0.0},
     list_to_tuple(lists:seq(1, 255)), list_to_tuple(lists:seq(1, 256)),
     list_to_tuple([{I, [I]} || I <- lists:seq(1, 300)])].

maps() ->
    [#{}, #{a => 1}, #{1 => int, 1.0 => float},
     #{{1, 2} => tuple, [1, 2] => list, #{a => 1} => map, <<"k">> => binary, 3 => int,
       2.5 => float, foo => atom, [] => nil, {} => empty_tuple, #{} => empty_map,
       "str" => string, <<1:3>> => bits},
     #{#{#{x => y} => z} => #{[#{}] => {#{}}}},
     maps:from_list([{I, I * I} || I <- lists:seq(1, 32)]),
     maps:from_list([{I, I * I} || I <- lists:seq(1, 33)]),
     maps:from_list([{{k, I}, integer_to_list(I)} || I <- lists:seq(1, 100)]),
     maps:from_list([{I, <<I:16>>} || I <- lists:seq(1, 1000)]),
     maps:from_list([{list_to_atom("key" ++ integer_to_list(I)), #{I => [I]}}
                     || I <- lists:seq(1, 40)])].

nested() ->
    Depth = 100,
    Seq = lists:seq(1, Depth),
    [lists:foldl(fun(_, Acc) -> [Acc] end, [], Seq),
     lists:foldl(fun(_, Acc) -> {Acc} end, {}, Seq),
     lists:foldl(fun(_, Acc) -> #{a => Acc} end, #{}, Seq),
     lists:foldl(fun(I, Acc) -> #{Acc => I} end, #{}, lists:seq(1, 20)),
     lists:foldl(fun(I, Acc) ->
                         case I rem 3 of
                             0 -> [I, Acc];
                             1 -> {Acc, I};
                             2 -> #{I => Acc}
                         end
                 end, [], Seq),
     lists:foldl(fun(I, Acc) -> [I | Acc] end, tail, Seq),
     lists:foldl(fun(_, Acc) -> [Acc | x] end, x, lists:seq(1, 50))].

opaque() ->
    Self = self(),
    Other = spawn(fun() -> receive stop -> ok end end),
    Ref = make_ref(),
    Alias = erlang:alias(),
    Port = hd(erlang:ports()),
    Y = 42,
    Big = #{data => <<"captured">>, pid => Self},
    [Self, Other, Ref, Alias, Port, erlang:ports(),
     fun lists:map/2, fun erlang:'+'/2, fun ?MODULE:main/0, fun erlang:'not'/1,
     fun() -> ok end,
     fun(X) -> X + Y end,
     fun(A, B, C) -> {A, B, C, Big, Ref} end,
     fun(X) -> [X | Other] end,
     {Self, Ref, #{pid => Self, Ref => ref}},
     [Self | Ref], [Port, Alias, Other],
     #{Self => 1, Ref => 2, Port => 3, fun lists:map/2 => 4},
     {tagged, Other, [Alias, {Port}], <<"bin">>}].

%% Pids, references and ports of other nodes, made by binary_to_term from the older and the
%% newer external formats.
external() ->
    Node = <<119, 10, "other@host">>,
    Forms = [<<131, 88, Node/binary, 1234:32, 5:32, 1234567:32>>,
             <<131, 103, Node/binary, 77:32, 0:32, 3>>,
             <<131, 90, 5:16, Node/binary, 7:32, 1:32, 2:32, 3:32, 4:32, 5:32>>,
             <<131, 90, 3:16, Node/binary, 16#FFFFFFFF:32, 1:32, 2:32, 3:32>>,
             <<131, 114, 2:16, Node/binary, 3, 10:32, 20:32>>,
             <<131, 101, Node/binary, 9:32, 2>>,
             <<131, 120, Node/binary, 16#100000002:64, 7:32>>,
             <<131, 89, Node/binary, 9:32, 16#FFFFFFFF:32>>,
             <<131, 102, Node/binary, 11:32, 1>>],
    [binary_to_term(F) || F <- Forms].

%%% Deterministic pseudo-random terms

gen(0) ->
    leaf();
gen(Depth) ->
    case rand:uniform(12) of
        N when N =< 4 -> leaf();
        5 -> [gen(Depth - 1) || _ <- lists:seq(1, rand:uniform(6) - 1)];
        6 -> [gen(Depth - 1) || _ <- lists:seq(1, rand:uniform(6))];
        7 -> list_to_tuple([gen(Depth - 1) || _ <- lists:seq(1, rand:uniform(6) - 1)]);
        8 -> maps:from_list([{gen(Depth - 1), gen(Depth - 1)}
                             || _ <- lists:seq(1, rand:uniform(6) - 1)]);
        9 -> [gen(Depth - 1) || _ <- lists:seq(1, rand:uniform(3))] ++ leaf();
        10 -> rand_string();
        11 -> {gen(Depth - 1), gen(Depth - 1)};
        12 -> maps:from_list([{I, gen(Depth - 1)} || I <- lists:seq(1, 30 + rand:uniform(10))])
    end.

leaf() ->
    case rand:uniform(14) of
        1 -> rand:uniform(256) - 1;
        2 -> rand:uniform(1 bsl 32) - (1 bsl 31);
        3 -> rand_sign() * rand:uniform(1 bsl rand:uniform(300));
        4 -> rand_float();
        5 -> rand_sign() * rand:uniform() * math:pow(10, rand:uniform(40) - 20);
        6 -> rand_atom();
        7 -> rand_bytes(rand:uniform(20) - 1);
        8 -> <<(rand:uniform(1 bsl 20)):(rand:uniform(30))>>;
        9 -> lists:nth(rand:uniform(6), [[], {}, #{}, <<>>, '', ""]);
        10 -> rand:uniform(1 bsl 64) - (1 bsl 63);
        11 -> float(rand:uniform(1000000));
        12 -> rand_string();
        13 -> rand:uniform(1 bsl 28) - (1 bsl 27);
        14 -> lists:nth(rand:uniform(5), [ok, error, 'Quoted Atom', 'привет', 'ÿé'])
    end.

rand_sign() ->
    case rand:uniform(2) of 1 -> 1; 2 -> -1 end.

%% Any finite float, from random bits.
rand_float() ->
    case <<(rand:uniform(1 bsl 64) - 1):64>> of
        <<F:64/float>> -> F;
        _ -> rand_float()
    end.

rand_bytes(N) ->
    << <<(rand:uniform(256) - 1)>> || _ <- lists:seq(1, N) >>.

rand_char() ->
    Pool = "abcxyzABZ_@09 '\"\\\n" ++ [$é, $ÿ, 16#44F, 16#65E5, 16#1F642],
    lists:nth(rand:uniform(length(Pool)), Pool).

rand_atom() ->
    list_to_atom([rand_char() || _ <- lists:seq(1, rand:uniform(12) - 1)]).

rand_string() ->
    case rand:uniform(3) of
        1 -> [rand:uniform(256) - 1 || _ <- lists:seq(1, rand:uniform(10))];
        2 -> [rand_char() || _ <- lists:seq(1, rand:uniform(10))];
        3 -> binary_to_list(rand_bytes(rand:uniform(40)))
    end.
