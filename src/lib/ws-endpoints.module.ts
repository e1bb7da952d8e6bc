import {
  BeforeApplicationShutdown,
  Inject,
  Logger,
  Module,
  OnApplicationShutdown,
  OnModuleInit,
} from '@nestjs/common';
import { CloseCode } from './context/close-code.enum';
import type { WsEndpointsModuleOptions } from './interfaces/ws-endpoint-options.interface';
import {
  assertValidShutdownTimeout,
  DEFAULT_SHUTDOWN_TIMEOUT,
} from './ws-endpoints.defaults';
import {
  ApplicationConfig,
  DiscoveryModule,
  HttpAdapterHost,
  ModuleRef,
} from '@nestjs/core';
import { WsEndpointExplorer } from './discovery/ws-endpoint-explorer';
import {
  ENDPOINT_MAPPED,
  MISSING_HTTP_SERVER,
  SHUTTING_DOWN,
} from './messages';
import { SessionRunner } from './session/session-runner';
import { WebSocketSessions } from './session/websocket-sessions';
import { platformHandler, routeFirst } from './upgrade/platform-handler';
import { UpgradeDispatcher } from './upgrade/upgrade-dispatcher';
import { WsRouteFactory } from './upgrade/ws-route-factory';
import {
  ConfigurableModuleClass,
  WS_ENDPOINTS_OPTIONS,
} from './ws-endpoints.module-definition';

/**
 * Serves the `@Ws` methods of the application's controllers.
 *
 * @example
 * @Module({ imports: [WsEndpointsModule.forRoot({ maxPayload: 64 * 1024 })], controllers: [ChatController] })
 * export class AppModule {}
 * @publicApi
 */
@Module({
  imports: [DiscoveryModule],
  providers: [
    WsEndpointExplorer,
    UpgradeDispatcher,
    SessionRunner,
    WebSocketSessions,
  ],
  exports: [WebSocketSessions],
})
export class WsEndpointsModule
  extends ConfigurableModuleClass
  implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown
{
  private readonly logger = new Logger(WsEndpointsModule.name);

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly moduleRef: ModuleRef,
    private readonly config: ApplicationConfig,
    private readonly explorer: WsEndpointExplorer,
    private readonly runner: SessionRunner,
    private readonly dispatcher: UpgradeDispatcher,
    private readonly sessions: WebSocketSessions,
    @Inject(WS_ENDPOINTS_OPTIONS)
    private readonly options: WsEndpointsModuleOptions,
  ) {
    super();
  }

  /** Registers each endpoint's route with the HTTP adapter and starts claiming upgrades. */
  onModuleInit(): void {
    const adapter = this.adapterHost.httpAdapter;
    const server = adapter?.getHttpServer();
    if (!server) throw new Error(MISSING_HTTP_SERVER);
    assertValidShutdownTimeout(this.options.shutdownTimeout);
    const endpoints = this.explorer.explore();
    const factory = new WsRouteFactory(
      this.moduleRef,
      this.config,
      adapter,
      this.runner,
    );
    for (const endpoint of endpoints) {
      const handler = factory.create(endpoint);
      for (const path of endpoint.paths) {
        adapter.get(path, handler);
        this.logger.log(ENDPOINT_MAPPED(path, endpoint.name));
      }
    }
    const claimed = endpoints.flatMap(({ paths, options }) =>
      paths.map((path) => ({ path, allowedOrigins: options.allowedOrigins })),
    );
    routeFirst(adapter, claimed.length);
    this.dispatcher.attach(server, claimed, platformHandler(adapter));
  }

  /**
   * Before the HTTP server closes: new upgrades get 503, every session is closed with 1001 and its
   * signal aborted, and handlers are awaited up to `shutdownTimeout` before the rest are dropped.
   */
  async beforeApplicationShutdown(): Promise<void> {
    await this.sessions.drain(
      CloseCode.GoingAway,
      SHUTTING_DOWN,
      this.options.shutdownTimeout ?? DEFAULT_SHUTDOWN_TIMEOUT,
    );
  }

  onApplicationShutdown(): void {
    this.dispatcher.dispose();
  }
}
