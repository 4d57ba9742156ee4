"""``python -m infra.soak`` (``make soak``): convergence of crossroute under duplicates, reordering and
concurrent consumers, on the local stack, at a few thousand provider events.

1. **Scenario** (``scenario.py``), deterministic from ``--seed``: ``--senders`` synthetic people (300:
   about 3,000 provider events) writing on WhatsApp from phone + BSUID, from a BSUID only (username
   users) or from a phone only, changing their profile name or username, getting business-app echoes
   and their ``sent``/``delivered``/``read`` statuses, changing numbers (``user_changed_number``),
   stopping and resuming marketing, and being merged (an SMS from P, WhatsApp from BSUID B, then B's
   answer to a contact request attesting P).
2. **Reference** (``reference.py``): every event exactly once, in order, through the production code
   path (the webhook's split, ``parse``, ``Ingest`` on ``DynamoIdentityStore``) on moto in-process;
   the state read with the functions the contacts API uses.
3. **Chaos** (``chaos.py``): a fresh local stack (``CROSSROUTE_SQS_RETRY_DELAY=1``,
   ``CROSSROUTE_CONCURRENCY=4``, 4 pollers on the inbound queue); every event posted, signed, 1-3
   times in a random global order from 8 threads. SQS drops a copy whose twin is still queued (content
   deduplication), so half the extra copies are held back and posted, in random order again, once the
   queue has drained: late provider retries, which the consumers must find already stored. Once the
   queue stays empty, every identifier is looked up with ``GET /contacts`` and every contact's
   timeline read with ``GET /contacts/{id}/timeline`` (all pages).
4. **Comparison** (``canonical.py``): both states as a set of customers, without generated ids. Left
   out because they depend on arrival order by design: identity events on the timeline and
   ``merged_from`` (a link that arrives before the messages it links creates one customer instead of
   merging two), with ``created_at``/``updated_at`` and phone sources and attestation times (Twilio
   sends no event time: an SMS attests its number at arrival). Also left out of the scenario for that
   reason: SMS STOP/START keywords and Twilio status callbacks (arrival order decides them), and SMS
   from a number that changed hands (``tests/unit/test_identity_properties.py``, ``AMBIGUOUS``).
   Any difference fails the run, with a bounded diff whose identifiers are fingerprints.
5. **Checks**: nothing on any dead-letter queue, no webhook answered 5xx (or refused a valid call).
6. **Figures**: events, deliveries, wall time, events/s and deliveries/s through the webhooks until
   drained, webhook latency p50/p90/p99/max, the stack process's peak RSS (VmHWM: the consumers run
   in that process), consumer retries and redeliveries from the stack's log; ``--json FILE`` writes
   them. Exit 0 on PASS, 1 on FAIL.

The stack runs as ``python -m infra.soak.stack`` (``stack.py``): ``infra.local`` unchanged, with
``--pollers`` SQS pollers on the inbound queue (the local stack polls each queue with one thread, so
its consumer ingests one batch at a time, whatever ``CROSSROUTE_CONCURRENCY`` says; Lambda runs a
FIFO queue's batches concurrently, one per message group in flight), on moto with changes that make
it behave like AWS where the soak depends on it and fast enough for thousands of events
(``emulator.py``): each DynamoDB request and SQS receive is atomic (moto's ``TransactWriteItems`` and
FIFO ``ReceiveMessage`` are not, under concurrent requests), and a failed transaction rolls back only
the items it touched (moto copies the whole table per item of every transaction: quadratic at this
size). ``--stock-emulator`` runs the stack exactly as ``make run`` does.
"""
