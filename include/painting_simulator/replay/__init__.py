"""The ``painting_replay`` DAG's tasks: replay a range of the row sequence as a load test.

A replay is a load test with real data: rows ``start_row`` to ``start_row + rows - 1`` of the
simulator's sequence are mapped like the simulator's, POSTed to ``/predict/`` with at most
``concurrency`` requests in flight, and every outcome is recorded through the simulator's
results writer under the replay's run id. The simulator's position is never read or written.
Memory stays flat whatever the range: rows are read lazily from the row cache in chunks, recorded
chunk by chunk (the next chunk is being sent while the previous one is written), and latencies go
into a fixed-size histogram.

* :mod:`.plan` which rows: the sequence's size, the shards, the items chunk by chunk;
* :mod:`.sender` the HTTP sender on one event loop; :mod:`.http1` its HTTP/1.1 client;
* :mod:`.shard` one shard: send, record, remember progress (the ``replay_shard`` task);
* :mod:`.figures` outcome counts, the latency histogram, verdicts against expectations;
* :mod:`.thresholds` the release gate: limits checked up front, judged on the summary;
* :mod:`.summary` the shards merged into the summary (the ``summarize`` task).
"""
