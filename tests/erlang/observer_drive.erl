%% Drives OTP's observer (wx GUI, under Xvfb) against a node, for tests/observer_gui.rs.
%%
%%   erl -sname X -setcookie C -noshell -run observer_drive main NODE DIR
%%
%% Starts observer, switches it to NODE (as its Nodes menu does), then shows each tab for a
%% few seconds and saves a screenshot of the screen as DIR/tabN.png (xwd | xwdtopnm |
%% pnmtopng). Prints one line per fact, then `done`:
%%   node NODE                 the node observer shows
%%   label TEXT                each text the System tab displays
%%   tab N NAME alive BOOL     after showing tab N: whether observer still runs
%%   status TEXT               the status bar after the Processes tab ("Number of Processes: N")
%% Error reports go to stdout too, so the test sees any crash of a tab.
%% The switch reads observer_wx's state (OTP 25's record layout: nodes in field 11); the
%% releases after OTP 25 have observer:start(Node), but the ones CI unpacks have no wx.
-module(observer_drive).
-export([main/1]).

main([NodeS, Dir]) ->
    Node = list_to_atom(NodeS),
    pong = net_adm:ping(Node),
    ok = observer:start(),
    wait_for_window(50),
    Ns = element(11, state()),
    observer ! {wx, 1000 + index(Node, Ns, 1), undefined, [],
                {wxCommand, command_menu_selected, "", 0, 0}},
    timer:sleep(2000),
    io:format("node ~s~n", [element(10, state())]),
    Self = self(),
    sys:replace_state(observer, fun(S) -> Self ! {env, wx:get_env()}, S end),
    receive {env, Env} -> wx:set_env(Env) end,
    [{sys_panel, Sys, _} | _] = Panels = element(8, state()),
    [io:format("label ~ts~n", [wxStaticText:getLabel(T)])
     || T <- static_texts(panel_state(Sys))],
    Notebook = element(6, state()),
    [begin
         wxNotebook:setSelection(Notebook, I),
         timer:sleep(2500),
         Name = wxNotebook:getPageText(Notebook, I),
         Alive = is_process_alive(whereis(observer)),
         io:format("tab ~p ~ts alive ~p~n", [I, Name, Alive]),
         shot(Dir, I),
         case Name of
             "Processes" ->
                 io:format("status ~ts~n", [wxStatusBar:getStatusText(element(5, state()))]);
             _ -> ok
         end
     end || I <- lists:seq(0, length(Panels) - 1)],
    io:format("done~n"),
    halt(0).

wait_for_window(0) -> exit(no_observer);
wait_for_window(N) ->
    case whereis(observer) of
        undefined -> timer:sleep(100), wait_for_window(N - 1);
        _ -> ok
    end.

state() ->
    [_, S | _] = sys:get_state(observer),
    S.

panel_state(Obj) ->
    [_, S | _] = sys:get_state(wx_object:get_pid(Obj)),
    S.

%% Every wxStaticText reference inside a term.
static_texts({wx_ref, _, wxStaticText, _} = T) -> [T];
static_texts(T) when is_tuple(T) -> static_texts(tuple_to_list(T));
static_texts(L) when is_list(L) -> lists:append([static_texts(X) || X <- L]);
static_texts(_) -> [].

index(N, [N | _], I) -> I;
index(N, [_ | T], I) -> index(N, T, I + 1).

shot(Dir, I) ->
    File = filename:join(Dir, "tab" ++ integer_to_list(I) ++ ".png"),
    os:cmd("xwd -root -silent | xwdtopnm 2>/dev/null | pnmtopng > '" ++ File ++ "'").
