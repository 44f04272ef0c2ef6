-- Incoming prompts whose id is stored with other content. Registering them would change what the
-- stored answers answer, and every rate counted over them, so evaluate.register refuses them.
with final as (
    select i.id, p.suite as stored_suite, p.split as stored_split
    from incoming_prompts i
    join prompts p on p.id = i.id
    where p.text <> i.text or p.kind <> i.kind or p.category <> i.category or p.split <> i.split
       or p.suite <> i.suite or p.expected <> i.expected
)
select * from final order by id
