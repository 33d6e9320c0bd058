"""hubsim keeps the simulator's schedule as the hub sees it: with
Interval=250 one device's messages arrive at the broker a median 250 ms
apart (within 10 %), and an Intervals list is used in turn, message by
message. Arrival times are taken at the broker side by a subscriber of its
own, through the gateway."""

import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "hubsim", "tests"))
import hglib  # noqa: E402
import hslib  # noqa: E402

TOPIC = "devices/sim000001/messages/events/"
HUB_CS = (f"HostName={hslib.HUB};SharedAccessKeyName=device;"
          f"SharedAccessKey={hslib.KEY}")


def gaps_at_broker(env, count):
    """Runs one device with env; returns the gaps (ms) between its
    messages' arrivals at the broker."""
    hub = hslib.Hub(wss=False)
    timed = hslib.TimedSubscriber(hub.broker.addr("plain"),
                                  "devices/+/messages/events/#")
    res = hslib.run_hubsim(
        ["--connect-to", hub.gw["mqtt"], "--cafile", hub.ca.cert],
        env=dict(env, IotHubConnectionString=HUB_CS,
                 MessageCount=str(count)), timeout=60)
    assert res.rc == 0, res
    assert res.report["messages"]["acked"] == count, res
    hglib.wait_until(lambda: len(timed.arrivals) >= count, hglib.scale(10),
                     what=f"{count} arrivals")
    times = [t for t, topic, _ in timed.arrivals if topic == TOPIC]
    assert len(times) == count
    hub.stop_gateways()
    return [(b - a) * 1000 for a, b in zip(times, times[1:])]


def test_interval_250_median():
    gaps = gaps_at_broker({"Interval": "250"}, 21)
    median = statistics.median(gaps)
    hglib.log(f"gaps ms: median {median:.1f}, min {min(gaps):.1f}, "
              f"max {max(gaps):.1f}")
    assert 225 <= median <= 275, gaps
    # A fixed-rate schedule: the whole run is 20 intervals, not more.
    assert 20 * 250 * 0.9 <= sum(gaps) <= 20 * 250 * 1.1, sum(gaps)


def test_intervals_cycle():
    gaps = gaps_at_broker({"Intervals": "100;300"}, 11)
    short, long_ = gaps[0::2], gaps[1::2]
    hglib.log(f"short {statistics.median(short):.1f} ms, "
              f"long {statistics.median(long_):.1f} ms")
    assert 85 <= statistics.median(short) <= 115, gaps
    assert 270 <= statistics.median(long_) <= 330, gaps


if __name__ == "__main__":
    hglib.main(globals())
