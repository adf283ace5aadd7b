-- 0006_payouts: PLACEHOLDER on the disputes branch only. Migration numbers are assigned per
-- branch (payouts: 0006, disputes: 0007) and must run without gaps, so this branch ships an
-- empty 0006 to test 0007. On merge, take the payouts branch's file of the same name.
SELECT 1;
