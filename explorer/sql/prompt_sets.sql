-- Every split in the store: train | dev | test, the attack set, and one 'import:<name>' set per imported
-- suite file; the test split first (the default everywhere), imported sets last.
with final as (
    select split, count(*) as n from ev.prompts group by split
)
select * from final order by split <> 'test', split like 'import:%', split
