"""ryu_lag: IEEE 802.1AX link aggregation for OpenFlow 1.3 switches, as a Ryu application."""
