#!/usr/bin/env python3
"""Interop with aiortc, a WebRTC stack written independently of str0m and of hualu.

aiortc publishes a tone through hualu's WHIP endpoint, and a second aiortc peer plays the room through WHEP,
decoding the Opus it receives. Exits 0 when the viewer decoded at least --frames audio frames within --timeout
seconds, 1 otherwise; prints one line of figures either way.

    tests/interop/aiortc_whip.py --url http://127.0.0.1:7880 --publish-token T1 --view-token T2

Driven by tests/sfu_interop.rs, which starts `hualu sfu` and mints the tokens. Loopback only: aioice is told to
gather 127.0.0.1 alone, and no STUN server is configured.
"""
import argparse
import asyncio
import fractions
import math
import sys
import time
import urllib.request

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame

# aioice skips loopback addresses when it gathers host candidates; the test stays on loopback.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

RATE = 48000
SAMPLES = 960  # 20 ms


class Tone(MediaStreamTrack):
    """A 440 Hz tone in 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self.pts = 0
        self.start = None

    async def recv(self):
        if self.start is None:
            self.start = time.monotonic()
        due = self.start + self.pts / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = AudioFrame(format="s16", layout="mono", samples=SAMPLES)
        samples = bytes()
        for i in range(SAMPLES):
            v = int(8000 * math.sin(2 * math.pi * 440 * (self.pts + i) / RATE))
            samples += v.to_bytes(2, "little", signed=True)
        frame.planes[0].update(samples)
        frame.pts = self.pts
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        self.pts += SAMPLES
        return frame


def post(url, token, sdp):
    req = urllib.request.Request(
        url,
        data=sdp.encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        if r.status != 201:
            raise RuntimeError(f"POST {url}: {r.status}")
        return r.read().decode(), r.headers.get("Location")


def delete(base, location, token):
    req = urllib.request.Request(base + location, method="DELETE", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


async def connect(pc, url, token):
    offer = await pc.createOffer()
    await pc.setLocalDescription(offer)  # aiortc gathers every candidate before this returns
    answer, location = await asyncio.get_running_loop().run_in_executor(
        None, post, url, token, pc.localDescription.sdp
    )
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return location


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--publish-token", required=True)
    ap.add_argument("--view-token", required=True)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=20.0)
    args = ap.parse_args()

    config = RTCConfiguration(iceServers=[])
    publisher = RTCPeerConnection(config)
    publisher.addTransceiver(Tone(), direction="sendonly")
    pub_location = await connect(publisher, args.url + "/whip", args.publish_token)

    viewer = RTCPeerConnection(config)
    viewer.addTransceiver("audio", direction="recvonly")
    decoded = {"frames": 0, "codec": None}
    done = asyncio.Event()

    @viewer.on("track")
    def on_track(track):
        async def consume():
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                decoded["frames"] += 1
                if decoded["frames"] >= args.frames:
                    done.set()

        asyncio.ensure_future(consume())

    view_location = await connect(viewer, args.url + "/whep", args.view_token)
    answer = viewer.remoteDescription.sdp
    decoded["codec"] = next((l.split()[1] for l in answer.splitlines() if l.startswith("a=rtpmap:")), None)
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(done.wait(), args.timeout)
        ok = True
    except asyncio.TimeoutError:
        ok = False
    elapsed = time.monotonic() - t0
    ice_state = publisher.iceConnectionState
    loop = asyncio.get_running_loop()
    statuses = [
        await loop.run_in_executor(None, delete, args.url, view_location, args.view_token),
        await loop.run_in_executor(None, delete, args.url, pub_location, args.publish_token),
    ]
    await viewer.close()
    await publisher.close()
    print(
        f"{'PASS' if ok else 'FAIL'} aiortc WHIP -> hualu -> aiortc WHEP: {decoded['frames']} audio frames decoded "
        f"({decoded['codec']}) in {elapsed:.1f} s; publisher ICE {ice_state}, "
        f"DELETE statuses {statuses}"
    )
    return 0 if ok and statuses == [200, 200] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
