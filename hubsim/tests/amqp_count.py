"""amqp_count: an AMQP 1.0 consumer for hubsim's end-to-end tests, on
python3-qpid-proton (run it with Debian's /usr/bin/python3).

    amqp_count.py URL SOURCE

Receives from SOURCE (a RabbitMQ address such as /queue/hubsim) with SASL
PLAIN from URL's user and password, accepts every message and prints one
JSON line for each: {"device": <application property device-id>}. A line
{"ready": true} comes first, once the link is attached.
"""

import json
import sys

from proton.utils import BlockingConnection
from proton import Timeout


def main():
    url, source = sys.argv[1], sys.argv[2]
    conn = BlockingConnection(url, allowed_mechs="PLAIN", timeout=30)
    rcv = conn.create_receiver(source, credit=500)
    print(json.dumps({"ready": True}), flush=True)
    while True:
        try:
            msg = rcv.receive(timeout=3600)
        except Timeout:
            continue
        props = msg.properties or {}
        print(json.dumps({"device": props.get("device-id")}), flush=True)
        rcv.accept()


if __name__ == "__main__":
    main()
