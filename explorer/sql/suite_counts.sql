with final as (
    select suite, split, kind, count(*) as n from ev.prompts group by suite, split, kind
)
select * from final order by suite, split
