import {
  Controller,
  createParamDecorator,
  ExecutionContext,
  Headers,
  INestApplication,
  Ip,
  Param,
  ParseIntPipe,
  Query,
  Req,
} from '@nestjs/common';
import type { Request } from 'express';
import {
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { connectWs, expectRejected } from 'nestjs-ws-endpoints/testing';
import { platforms, startApp } from './utils/test-app';

const ClientName = createParamDecorator(
  (prefix: string, context: ExecutionContext) => {
    const request = context.switchToHttp().getRequest<Request>();
    return `${prefix}${String(request.headers['x-client'] ?? 'anonymous')}`;
  },
);

let calls = 0;

@Controller('items')
class ItemsController {
  @Ws(':id')
  async item(
    @Socket() socket: WebSocketContext,
    @Param('id', ParseIntPipe) id: number,
    @Query('q') q: string,
    @Headers('x-client') header: string,
    @Req() request: Request,
    @Ip() ip: string,
    @ClientName('client:') client: string,
  ) {
    calls++;
    await socket.send({
      id,
      idType: typeof id,
      q,
      header,
      url: request.url,
      ip,
      client,
      sameRequest:
        ((request as { raw?: unknown }).raw ?? request) === socket.request,
    });
  }
}

describe.each(platforms)(
  'param decorators on a @Ws handler, on %s',
  (platform) => {
    let app: INestApplication;

    beforeAll(async () => {
      ({ app } = await startApp(
        {
          imports: [WsEndpointsModule.forRoot({})],
          controllers: [ItemsController],
        },
        undefined,
        platform,
      ));
    });

    afterAll(() => app.close());

    it('resolves @Param (through ParseIntPipe), @Query, @Headers, @Req, @Ip and custom decorators from the upgrade request', async () => {
      const client = await connectWs(app, '/items/42?q=blue', {
        headers: { 'x-client': 'jest' },
      });
      expect(await client.nextJson()).toEqual({
        id: 42,
        idType: 'number',
        q: 'blue',
        header: 'jest',
        url: '/items/42?q=blue',
        ip: '127.0.0.1',
        client: 'client:jest',
        sameRequest: true,
      });
    });

    it("answers 400 with Nest's body when a param pipe fails, before any socket exists", async () => {
      const before = calls;
      const { body } = await expectRejected(app, '/items/abc', 400);
      expect(body).toEqual({
        statusCode: 400,
        message: 'Validation failed (numeric string is expected)',
        error: 'Bad Request',
      });
      expect(calls).toBe(before);
    });
  },
);
