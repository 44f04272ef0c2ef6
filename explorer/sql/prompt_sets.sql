-- Every split in the store: train | dev | test, and one 'import:<name>' set per imported suite file.
with final as (
    select split, count(*) as n from ev.prompts group by split
)
select * from final order by split like 'import:%', split
