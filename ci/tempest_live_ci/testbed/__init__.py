"""The testbed: a private network for the guest, with DHCP, TFTP, HTTP and a
way to Debian's archive (apt proxy or NAT).

    isolated    everything inside a network namespace named after the run id:
                runs never collide and the host network does not change
    persistent  in the host namespace, kept between runs; can put a real NIC
                on the bridge to boot real hardware

Everything is written to a journal in the testbed's state directory
(testbed/journal.py) before it is made, so teardown, a failed setup and
`cleanup` after a killed run all undo the same records.
"""

