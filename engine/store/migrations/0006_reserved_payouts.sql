-- 0006_reserved_payouts: a placeholder on the recon branch so migration numbering has no gap (0008 is
-- reconciliation). The payouts/disputes branch's real migration of this number replaces it at
-- merge: delete this file then.
SELECT 1;
