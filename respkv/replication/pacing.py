"""How fast anti-entropy repairs may go while clients use the node.

A repair of a large divergence ships records for minutes; every record it pulls
or pushes costs CPU on this node and its peer that clients would otherwise have.
``anti-entropy-keys-per-second`` caps the repair's rate; on a node that clients
keep busy the repair yields further, as Riak's AAE throttle slows exchanges when
its vnodes are loaded: at ``anti-entropy-load-ops`` client commands per second
the rate is halved, at twice as many it is a third, and so on.  The load is the
busiest of the samples behind ``INFO stats``' ``instantaneous_ops_per_sec`` (one
per cron tick, the last 16), so a repair yields within a tick of clients
arriving and resumes its pace only when the whole window was quieter.  It counts
client commands only (the repair's own traffic travels on the cluster bus), so a
repair never slows itself down, and an idle node repairs at the full rate: a
replaced disk still comes back as fast as the cap allows.

Client commands per second miss what matters most on a shared machine: nodes,
clients and other processes competing for the same cores.  A node answering a
few thousand commands a second may still be taking a core from them.  So the
rate also falls with the machine's **CPU pressure** (Linux's pressure stall
information: the share of time at least one runnable task waited for a CPU;
the node samples it every cron tick, see :mod:`respkv.net.rates`): at
``anti-entropy-cpu-pressure`` per cent the rate is halved, at twice as much it
is a third.  Where the kernel does not report pressure the factor is 1.
"""

from __future__ import annotations


def repair_rate(keys_per_second: float, client_ops_per_second: float, load_ops: float,
                cpu_pressure: float = 0.0, half_pressure: float = 0.0) -> float:
    """The records per second a repair may handle now.

    ``keys_per_second`` is the cap, ``client_ops_per_second`` the clients' recent
    load on this node and ``load_ops`` the load at which the rate is halved
    (0: the load is ignored); ``cpu_pressure`` the recent CPU pressure (per cent
    of the time a task waited for a CPU) and ``half_pressure`` the pressure at
    which the rate is halved (0: pressure is ignored).  Each factor falls as
    ``half / (half + x)``: smoothly, without a threshold where a repair would
    stop and start."""
    rate = float(keys_per_second)
    if load_ops > 0 and client_ops_per_second > 0:
        rate *= load_ops / (load_ops + client_ops_per_second)
    if half_pressure > 0 and cpu_pressure > 0:
        rate *= half_pressure / (half_pressure + cpu_pressure)
    return rate
