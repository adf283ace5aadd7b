-- 0010_reconx: a matched seller payout line is kept as a reconciliation item (issue 12).
--
-- A bank's seller payout line posts nothing (the payout's own posting moved bank_cash), so the
-- only trace that a statement matched it is a stored item: class 'matched', action
-- 'keep_match', resolved (engine/reconciliation/run.py). A later statement naming the payout
-- again is then `already_settled`. Only such items may be 'matched'.

ALTER TABLE recon_items DROP CONSTRAINT recon_items_class_known;
ALTER TABLE recon_items ADD CONSTRAINT recon_items_class_known CHECK (
    class IN ('matched', 'auto_fixed', 'manual_review', 'investigate'));
ALTER TABLE recon_items ADD CONSTRAINT recon_items_matched_is_kept CHECK (
    class <> 'matched' OR (action = 'keep_match' AND status = 'resolved'));
