%% The Erlang/OTP side of groups-bench: pg join visibility and group-send throughput.
%% Compiled with erlc by the bench binary, loaded with -pa on every node. Each entry
%% point prints space-separated `key value` lines on stdout and halts the VM; any crash
%% prints `error ...` and halts with status 1, so the harness never hangs on a shell.
-module(meshbench_pg).
-export([visibility/5, throughput/5, local_throughput/3]).
-export([connect_peers/1, poller/4, joiner/2, setup_receivers/2, count/0, send_loop/3]).

%% ---- entry points (run on the hidden controller node) -----------------------------

%% Join visibility: Joins times, the node at JoinerIdx (1-based) joins a fresh group;
%% a poller on every node polls pg:get_members/1 every PollMs until it sees the member.
visibility(Names, JoinerIdx, Joins, PollMs, TimeoutMs) ->
    run(fun() ->
        Nodes = nodes_of(Names),
        connect(Nodes, 60000),
        Joiner = lists:nth(JoinerIdx, Nodes),
        lists:foreach(fun(J) -> vis_one(J, Nodes, Joiner, PollMs, TimeoutMs) end,
                      lists:seq(1, Joins))
    end).

%% Group-send throughput across distribution: PerNode receivers on each member node,
%% one sender process on the sender node sending to every member for DurationMs.
throughput(SenderName, MemberNames, PerNode, Bytes, DurationMs) ->
    run(fun() ->
        [Sender | Members] = nodes_of([SenderName | MemberNames]),
        connect([Sender | Members], 60000),
        [ok = erpc:call(N, ?MODULE, setup_receivers, [meshbench_tp, PerNode]) || N <- Members],
        Want = PerNode * length(Members),
        wait_members(Sender, meshbench_tp, Want, 30000),
        report_throughput(fun() -> lists:sum([erpc:call(N, ?MODULE, count, []) || N <- Members]) end,
                          fun() -> erpc:call(Sender, ?MODULE, send_loop, [meshbench_tp, Bytes, DurationMs], infinity) end)
    end).

%% The same on one node, no distribution: Receivers local receivers and a local sender.
local_throughput(Receivers, Bytes, DurationMs) ->
    run(fun() ->
        ok = setup_receivers(meshbench_tp, Receivers),
        wait_members(node(), meshbench_tp, Receivers, 30000),
        report_throughput(fun count/0,
                          fun() -> send_loop(meshbench_tp, Bytes, DurationMs) end)
    end).

%% ---- pieces ------------------------------------------------------------------------

run(F) ->
    try
        F(),
        halt(0)
    catch
        Class:Reason:Stack ->
            io:format("error ~0p:~0p ~0p~n", [Class, Reason, Stack]),
            halt(1)
    end.

nodes_of(Names) ->
    [_, Host] = string:split(atom_to_list(node()), "@"),
    [list_to_atom(N ++ "@" ++ Host) || N <- Names].

%% Connects the controller to every node, every node to every other, and waits until
%% each sees all the others.
connect(Nodes, TimeoutMs) ->
    T0 = erlang:monotonic_time(millisecond),
    Deadline = T0 + TimeoutMs,
    [reach(N, Deadline) || N <- Nodes],
    [ok = erpc:call(N, ?MODULE, connect_peers, [Nodes]) || N <- Nodes],
    Want = length(Nodes) - 1,
    wait_until(fun() -> lists:all(fun(N) -> length(erpc:call(N, erlang, nodes, [])) >= Want end, Nodes) end,
               Deadline, {not_meshed, Nodes}),
    io:format("connected_ms ~p~n", [erlang:monotonic_time(millisecond) - T0]).

reach(N, Deadline) ->
    wait_until(fun() -> net_kernel:connect_node(N) =:= true end, Deadline, {unreachable, N}).

connect_peers(Nodes) ->
    [net_kernel:connect_node(N) || N <- Nodes, N =/= node()],
    ok.

wait_until(F, Deadline, Why) ->
    case F() of
        true -> ok;
        false ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> error(Why);
                false -> timer:sleep(50), wait_until(F, Deadline, Why)
            end
    end.

wait_members(Node, G, Want, TimeoutMs) ->
    Deadline = erlang:monotonic_time(millisecond) + TimeoutMs,
    wait_until(fun() -> length(erpc:call(Node, pg, get_members, [G])) >= Want end,
               Deadline, {members_missing, Node, G, Want}).

vis_one(J, Nodes, Joiner, PollMs, TimeoutMs) ->
    G = {meshbench_vis, J},
    Self = self(),
    Deadline = os:system_time(microsecond) + TimeoutMs * 1000,
    Pollers = [spawn(N, ?MODULE, poller, [Self, G, PollMs, Deadline]) || N <- Nodes],
    [receive {ready, P} -> ok end || P <- Pollers],
    JP = spawn(Joiner, ?MODULE, joiner, [Self, G]),
    T0 = receive {joined, JP, T} -> T end,
    Seen = [receive {seen, P, At} -> At; {unseen, P} -> unseen end || P <- Pollers],
    JP ! leave,
    case lists:member(unseen, Seen) of
        true ->
            io:format("vis ~p timeout ~p~n", [J, length([x || unseen <- Seen])]);
        false ->
            io:format("vis ~p us ~p~n", [J, lists:max(Seen) - T0])
    end,
    timer:sleep(100).

poller(Ctl, G, PollMs, Deadline) ->
    Ctl ! {ready, self()},
    poll_loop(Ctl, G, PollMs, Deadline).

poll_loop(Ctl, G, PollMs, Deadline) ->
    case pg:get_members(G) of
        [_ | _] ->
            Ctl ! {seen, self(), os:system_time(microsecond)};
        [] ->
            case os:system_time(microsecond) > Deadline of
                true -> Ctl ! {unseen, self()};
                false -> timer:sleep(PollMs), poll_loop(Ctl, G, PollMs, Deadline)
            end
    end.

joiner(Ctl, G) ->
    T0 = os:system_time(microsecond),
    ok = pg:join(G, self()),
    Ctl ! {joined, self(), T0},
    receive leave -> ok end.

%% K receivers on this node join G; each counts what it receives in one shared
%% counter (kept in a persistent term so count/0 finds it).
setup_receivers(G, K) ->
    C = counters:new(1, [write_concurrency]),
    persistent_term:put(meshbench_counter, C),
    Parent = self(),
    [spawn(fun() -> ok = pg:join(G, self()), Parent ! joined, recv_loop(C) end)
     || _ <- lists:seq(1, K)],
    [receive joined -> ok end || _ <- lists:seq(1, K)],
    ok.

recv_loop(C) ->
    receive _ -> counters:add(C, 1, 1), recv_loop(C) end.

count() ->
    counters:get(persistent_term:get(meshbench_counter), 1).

%% Sends a Bytes-byte binary to every member of G, over and over, for DurationMs.
send_loop(G, Bytes, DurationMs) ->
    Members = pg:get_members(G),
    Msg = binary:copy(<<"x">>, Bytes),
    T0 = erlang:monotonic_time(microsecond),
    N = send_until(Members, Msg, T0 + DurationMs * 1000, 0),
    {N, erlang:monotonic_time(microsecond) - T0, length(Members)}.

send_until(Members, Msg, End, N) ->
    case erlang:monotonic_time(microsecond) >= End of
        true -> N;
        false ->
            lists:foreach(fun(P) -> P ! Msg end, Members),
            send_until(Members, Msg, End, N + 1)
    end.

report_throughput(Count, Send) ->
    Before = Count(),
    {Sends, ElapsedUs, Targets} = Send(),
    After = Count(),
    timer:sleep(1000),
    Settled = Count(),
    io:format("tp sends ~p elapsed_us ~p targets ~p delivered ~p settled ~p~n",
              [Sends, ElapsedUs, Targets, After - Before, Settled - Before]).
