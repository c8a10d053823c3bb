-- Whether a device was designated to run its school's speed tests (Inventory.speed_tester);
-- NULL from agents older than the field. The policy tells a school with live agents but no
-- designated tester apart from one whose tests fail.
ALTER TABLE devices ADD COLUMN speed_tester INTEGER;
