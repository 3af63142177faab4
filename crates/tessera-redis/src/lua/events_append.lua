-- EventStore::append_events: events recording no other write (a refused
-- device-binding proof). ARGV: the events.
evs(A)
return 1
