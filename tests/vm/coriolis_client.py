#!/usr/bin/python3
"""A client that speaks to snapmgrd as the Coriolis metal hub's
AgentClient does (cloudbase/python-coriolismetalhubclient,
coriolismetalhub/client.py), written from the protocol it uses (the
review's table, agent-check.md 2.1, and docs/API.md), not from its code.

What the client does on the wire, and so what AgentWire does:
- every call opens a new requests.Session with cert=(cert, key) and
  verify=ca (the client builds a session per call: a new TLS connection
  each time) and builds its URL as urljoin(endpoint, "/api/v1/...");
- list_disks sends params={"includeVirtual": <bool>}, which requests
  writes as includeVirtual=False or True;
- bodies go as json=, so Content-Type: application/json;
- get_snapshot_changes sends previousGenerationID and previousNumber,
  requests dropping them when they are None;
- download_chunk sends "Range: bytes=OFFSET-(OFFSET+LENGTH-1)" and hands
  back .content (or the response itself with stream=True) without looking
  at the status or the length: the checks on them here are the test's;
- delete_snapshot is DELETE /api/v1/snapshots/ID, without the trailing
  slash every other path has;
- every answer goes through raise_for_status().

create_snapshot() without disks lists the disks (includeVirtual=False)
and takes every one's "id": a disk the agent lists without an id raises
KeyError in the client before any snapshot is asked for.

The client pages nothing itself: its caller (the replication provider,
not public) picks the chunks. Here each changed range is read in chunks of
CHUNK_BYTES, the last one of a range shorter, as a caller that bounds its
memory would.

Run by tests/vm/scenarios/agent_serves_the_coriolis_client_wire_protocol.sh;
coriolis_client.py --help lists the steps.
"""
import argparse
import json
import os
import sys
import urllib.parse

import requests

CHUNK_BYTES = 5 << 20  # does not divide a disk: a range's last chunk is short
STREAM_BLOCK = 1 << 20
NO_ID = 3  # exit status: the client's create_snapshot() raised KeyError


class AgentWire:
    """AgentClient's requests, one method per call of the client, with
    the client's names and arguments."""

    def __init__(self, endpoint, cert, key, ca):
        self.endpoint, self.cert, self.key, self.ca = endpoint, cert, key, ca

    def _session(self):
        session = requests.Session()
        session.cert = (self.cert, self.key)
        session.verify = self.ca
        return session

    def _url(self, path):
        return urllib.parse.urljoin(self.endpoint, "/api/v1/" + path)

    def _answer(self, response):
        response.raise_for_status()
        return response

    def list_disks(self, include_virtual=False):
        return self._answer(self._session().get(
            self._url("disks/"), params={"includeVirtual": include_virtual})).json()

    def get_disk(self, disk_id):
        return self._answer(self._session().get(self._url(f"disks/{disk_id}/"))).json()

    def list_snapstore_locations(self):
        return self._answer(self._session().get(self._url("snapstorelocations/"))).json()

    def list_snapstore_mappings(self):
        return self._answer(self._session().get(self._url("snapstoremappings/"))).json()

    def create_snapstore_mapping(self, snapstore_id, disk_id):
        body = {"snapstore_location_id": snapstore_id, "tracked_disk_id": disk_id}
        return self._answer(self._session().post(self._url("snapstoremappings/"), json=body)).json()

    def create_snapshot(self, disks=None):
        if disks is None:
            disks = [disk["id"] for disk in self.list_disks()]
        if not disks:
            raise ValueError("no disks found for server")
        body = {"tracked_disk_ids": disks}
        return self._answer(self._session().post(self._url("snapshots/"), json=body)).json()

    def list_snapshots(self):
        return self._answer(self._session().get(self._url("snapshots/"))).json()

    def get_snapshot(self, snapshot_id):
        return self._answer(self._session().get(self._url(f"snapshots/{snapshot_id}/"))).json()

    def delete_snapshot(self, snapshot_id):
        self._answer(self._session().delete(self._url(f"snapshots/{snapshot_id}")))

    def get_snapshot_changes(self, snapshot_id, disk_id, generation_id=None, previous_number=None):
        position = {"previousGenerationID": generation_id, "previousNumber": previous_number}
        return self._answer(self._session().get(
            self._url(f"snapshots/{snapshot_id}/changes/{disk_id}/"), params=position)).json()

    def download_chunk(self, snapshot_id, disk_id, offset, length, stream=False):
        wanted = {"Range": f"bytes={offset}-{offset + length - 1}"}
        response = self._answer(self._session().get(
            self._url(f"snapshots/{snapshot_id}/consume/{disk_id}/"), headers=wanted, stream=stream))
        return response if stream else response.content


def check(condition, message):
    if not condition:
        sys.exit(f"FAIL: {message}")


def entry_of(snapshot, disk):
    """DISK's entry in a snapshot answer, found by its tracking id."""
    entries = [v for v in snapshot["volume_snapshots"] if v["original_device"]["tracking_id"] == disk]
    check(len(entries) == 1, f"snapshot {snapshot['snapshot_id']} has {len(entries)} entries for {disk}")
    return entries[0]


def positions(snapshot):
    """(disk, generation, number) of each entry, in disk order."""
    return sorted((v["original_device"]["tracking_id"], v["generation_id"], v["snapshot_number"])
                  for v in snapshot["volume_snapshots"])


def map_disks(agent, args):
    """The client's inventory, then a mapping of each disk to the location."""
    listed = {d["name"]: d for d in agent.list_disks()}
    check(all(not d["is_virtual"] for d in listed.values()), "includeVirtual=False lists a virtual disk")
    for disk in args.disks + args.untracked:
        check(disk in listed, f"{disk} not listed: {sorted(listed)}")
        check("id" not in listed[disk], f"{disk} has an id before it is mapped: {listed[disk]}")
    check(set(args.disks) <= {d["name"] for d in agent.list_disks(include_virtual=True)},
          "includeVirtual=True lists fewer disks")
    locations = [location["path"] for location in agent.list_snapstore_locations()]
    check(args.location in locations, f"location {args.location} not in {locations}")
    for disk in args.disks:
        mapping = agent.create_snapstore_mapping(args.location, disk)
        check((mapping["tracked_disk_id"], mapping["storage_location"]) == (disk, args.location), mapping)
        print(f"mapped {disk}: {mapping['id']}")
    mapped = {m["tracked_disk_id"] for m in agent.list_snapstore_mappings()}
    check(mapped == set(args.disks), f"mappings of {sorted(mapped)}")
    for disk in args.disks:
        check(agent.get_disk(disk).get("id") == disk, f"get_disk({disk}) without its id")
    ids = {d["name"]: d.get("id") for d in agent.list_disks()}
    check(all(ids[disk] == disk for disk in args.disks), f"ids after mapping: {ids}")


def snapshot(agent, args):
    """create_snapshot() with the disks in the order given, or, given none,
    the client's own way (every listed disk's id)."""
    try:
        taken = agent.create_snapshot(args.disks or None)
    except KeyError as e:
        untracked = sorted(d["name"] for d in agent.list_disks() if "id" not in d)
        print(f"create_snapshot() raised KeyError {e} (listed without an id: {' '.join(untracked)})",
              file=sys.stderr)
        sys.exit(NO_ID)
    wanted = args.disks or [d["id"] for d in agent.list_disks()]
    covered = [v["original_device"]["tracking_id"] for v in taken["volume_snapshots"]]
    check(sorted(covered) == sorted(wanted), f"snapshot of {wanted} covers {covered}")
    check(positions(agent.get_snapshot(taken["snapshot_id"])) == positions(taken),
          "get_snapshot differs from create_snapshot's answer")
    with open(args.out, "w") as out:
        json.dump(taken, out)
    print(f"snapshot {taken['snapshot_id']} of {' '.join(covered)}")


def records(agent, args):
    """Each disk's entry in the snapshot, as get_snapshot answers it now,
    names that disk's own device and image (an agent pairing results by
    place names another disk's)."""
    with open(args.snapshot) as f:
        snap = agent.get_snapshot(json.load(f)["snapshot_id"])
    for entry in snap["volume_snapshots"]:
        disk = entry["original_device"]["tracking_id"]
        check(os.path.basename(entry["original_device"]["device_path"]) == disk, f"{disk}'s entry: {entry}")
        check(os.path.basename(entry["snapshot_image"]["device_path"]) == disk + "-snap", f"{disk}'s entry: {entry}")


def backup(agent, args):
    """The changes of DISK since the snapshot --since (none: a full backup), each range
    read chunk by chunk into IMAGE at its offset."""
    with open(args.snapshot) as f:
        snap = json.load(f)
    generation = number = None
    if args.since:
        with open(args.since) as f:
            previous = entry_of(json.load(f), args.disk)
        generation, number = previous["generation_id"], previous["snapshot_number"]
    changes = agent.get_snapshot_changes(snap["snapshot_id"], args.disk, generation, number)
    check((changes["tracked_disk_id"], changes["snapshot_id"]) == (args.disk, snap["snapshot_id"]), changes)
    check(changes["backup_type"] == args.expect, f"{args.disk}: a {changes['backup_type']} backup, not {args.expect}")
    chunks = copied = 0
    with open(args.image, "r+b" if os.path.exists(args.image) else "wb") as image:
        for r in changes["ranges"]:
            start, end = r["start_offset"], r["start_offset"] + r["length"]
            for offset in range(start, end, CHUNK_BYTES):
                length = min(CHUNK_BYTES, end - offset)
                if args.stream:
                    response = agent.download_chunk(snap["snapshot_id"], args.disk, offset, length, stream=True)
                    check(response.status_code == 206, f"chunk {offset}+{length}: status {response.status_code}")
                    data = b"".join(response.iter_content(STREAM_BLOCK))
                else:
                    data = agent.download_chunk(snap["snapshot_id"], args.disk, offset, length)
                # The client takes what arrives: a short chunk would go into
                # the replica unnoticed.
                check(len(data) == length, f"chunk {offset}+{length} of {args.disk}: {len(data)} bytes")
                image.seek(offset)
                image.write(data)
                chunks += 1
                copied += length
    print(f"{args.disk}: {changes['backup_type']}, {len(changes['ranges'])} ranges, "
          f"{copied} bytes in {chunks} chunks")


def delete(agent, args):
    """delete_snapshot twice: the second is a client's retry, and must not
    raise either."""
    with open(args.snapshot) as f:
        snapshot_id = json.load(f)["snapshot_id"]
    agent.delete_snapshot(snapshot_id)
    agent.delete_snapshot(snapshot_id)
    check(snapshot_id not in [s["snapshot_id"] for s in agent.list_snapshots()], "still listed")
    try:
        agent.get_snapshot(snapshot_id)
        check(False, f"snapshot {snapshot_id} still answered after its DELETE")
    except requests.HTTPError as e:
        check(e.response.status_code == 404, f"get_snapshot after DELETE: {e}")


def main():
    # They would override verify=ca (requests merges the environment in).
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tls", required=True, help="folder of ca.crt, client.crt, client.key")
    parser.add_argument("--endpoint", required=True, help="https://HOST:PORT")
    steps = parser.add_subparsers(dest="step", required=True)
    p = steps.add_parser("map", help="list disks and locations, map DISKs")
    p.add_argument("location")
    p.add_argument("disks", nargs="+")
    p.add_argument("--untracked", nargs="*", default=[], help="disks listed that stay unmapped")
    p.set_defaults(run=map_disks)
    p = steps.add_parser("snapshot", help="create_snapshot(DISKs), or the no-list path; answer to OUT")
    p.add_argument("out")
    p.add_argument("disks", nargs="*")
    p.set_defaults(run=snapshot)
    p = steps.add_parser("backup", help="changes and chunked consume of DISK into IMAGE")
    p.add_argument("snapshot")
    p.add_argument("disk")
    p.add_argument("image")
    p.add_argument("--since", help="the earlier snapshot's answer: an incremental backup")
    p.add_argument("--expect", required=True, choices=("full", "incremental"), help="the backup type")
    p.add_argument("--stream", action="store_true", help="download_chunk(stream=True)")
    p.set_defaults(run=backup)
    p = steps.add_parser("records", help="each disk's entry names its own device and image")
    p.add_argument("snapshot")
    p.set_defaults(run=records)
    p = steps.add_parser("delete", help="delete_snapshot twice")
    p.add_argument("snapshot")
    p.set_defaults(run=delete)
    args = parser.parse_args()
    tls = args.tls
    agent = AgentWire(args.endpoint, f"{tls}/client.crt", f"{tls}/client.key", f"{tls}/ca.crt")
    args.run(agent, args)


if __name__ == "__main__":
    main()
