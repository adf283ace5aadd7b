-- Booking moved into the capture's own unit of work (docs/architecture.md, "Booking at
-- capture"): the 'booking' outbox subscriber no longer exists. Recovery books every captured
-- order an older version left unbooked (actors/order.py), so the subscriber's deliveries are
-- done with. Without this, its pending rows would wait forever for a consumer that is gone,
-- and its subscription would keep fanning new 'order.succeeded' messages out to nobody.
DELETE FROM outbox_deliveries WHERE subscriber = 'booking';
DELETE FROM outbox_subscriptions WHERE subscriber = 'booking';
