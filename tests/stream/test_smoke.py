from tests.stream.support import collect_events, connect, recv, send, subscribe


async def test_ping_and_live(stream, publisher):
    ws = await connect(stream)
    await send(ws, {"op": "ping", "id": "p1"})
    assert await recv(ws) == {"type": "pong", "id": "p1"}
    assert (await subscribe(ws, "s1", events={"pattern": "orders.#"}))["type"] == "subscribed"
    sent = [await publisher.event("orders", "eu.x", {"n": i}) for i in range(3)]
    got = await collect_events(ws, "s1", 3)
    assert [e["id"] for e in got] == [e["id"] for e in sent]
    await ws.close()
